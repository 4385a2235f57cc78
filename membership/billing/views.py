"""Support page, joining, giving once, My membership, and the Stripe webhook endpoint."""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from sqlalchemy import select
from werkzeug.wrappers import Response as BaseResponse
from wtforms import SelectChoice

from membership import queue
from membership.accounts.access import login_required
from membership.billing import (
    billing_enabled,
    forms,
    get_gateway,
    service,
    stripe_js_url,
    sync,
    test_mode,
    webhooks,
)
from membership.billing.gateway import CardError, GatewayError, GatewayUnavailable, InvalidWebhook
from membership.billing.models import Payment, PaymentKind, Price
from membership.billing.rules import Interval, format_money
from membership.extensions import csrf, db, limiter
from membership.forms import ButtonForm, show_error

bp = Blueprint("billing", __name__)

UNAVAILABLE = (
    "The payment service is unavailable right now. You have not been charged; "
    "please try again in a few minutes."
)
PAY_LIMIT = "20 per minute"


@bp.app_context_processor
def money_helpers() -> dict[str, Any]:
    return {"format_money": format_money}


def _json_outcome(outcome: service.Outcome) -> Response:
    return jsonify(outcome.as_json())


def _json_error(message: str, status: int) -> tuple[Response, int]:
    return jsonify(status="error", message=message), status


def _card_page_context() -> dict[str, Any]:
    return {
        "stripe_js_url": stripe_js_url(),
        "publishable_key": current_app.config["STRIPE_PUBLISHABLE_KEY"],
        "test_mode": test_mode(),
    }


def _gateway_call(func: Any, *args: Any, **kwargs: Any) -> tuple[Response, int] | Response:
    """Run a card step for the browser: JSON outcome, or a readable error with a 4xx/503."""
    try:
        result = func(db.session, get_gateway(), *args, **kwargs)
    except service.BillingError as error:
        db.session.rollback()
        return _json_error(error.message, 400)
    except CardError as error:
        db.session.commit()
        return jsonify(status="declined", message=error.message)
    except GatewayUnavailable:
        db.session.rollback()
        return _json_error(UNAVAILABLE, 503)
    except GatewayError:
        db.session.rollback()
        return _json_error("The payment could not be made. You have not been charged.", 400)
    db.session.commit()
    if isinstance(result, service.Outcome):
        return _json_outcome(result)
    return jsonify(status="ok", client_secret=result)


def _setup_intent_id() -> str:
    data = request.get_json(silent=True) or {}
    value = data.get("setup_intent_id") if isinstance(data, dict) else None
    if not isinstance(value, str) or not value.startswith("seti_") or len(value) > 255:
        abort(400)
    return value


# --- the support page --------------------------------------------------------------------------


@bp.get("/support")
def support() -> str:
    currencies = current_app.config["CURRENCIES"]
    currency = request.args.get("currency", "").upper()
    if currency not in currencies:
        currency = currencies[0]
    interval = request.args.get("interval", "month")
    if interval not in ("month", "year"):
        interval = "month"
    return render_template(
        "billing/support.html",
        tiers=service.offered_tiers(db.session),
        currencies=currencies,
        currency=currency,
        interval=Interval(interval),
        enabled=billing_enabled(),
        test_mode=test_mode(),
    )


@bp.get("/support/join")
@login_required
def join_summary() -> Any:
    """Confirm the choice (reached by GET so that login can send the reader back here)."""
    if service.is_patron(db.session, current_user):
        flash("You are already a patron: you can change your tier here.", "info")
        return redirect(url_for("billing.membership"))
    form = forms.ChoiceForm(request.args, meta={"csrf": False})
    price = None
    error = None
    if form.validate():
        try:
            price = service.choose_price(
                db.session,
                tier_id=form.tier.data,
                interval=form.interval.data,
                currency=form.currency.data,
                amount_text=form.amount.data or "",
                currencies=current_app.config["CURRENCIES"],
            )
        except service.BillingError as exc:
            error = exc.message
        db.session.rollback()  # choosing is not joining: nothing is kept yet
    else:
        error = "Please choose a tier, monthly or yearly, and a currency."
    if error:
        flash(error, "error")
        return redirect(url_for("billing.support")), 303
    confirm = forms.JoinForm(
        formdata=None,
        tier=form.tier.data,
        interval=form.interval.data,
        currency=form.currency.data,
        amount=form.amount.data,
        token=service.new_token(),
    )
    return render_template("billing/join_summary.html", price=price, form=confirm)


@bp.post("/support/join")
@login_required
def join() -> BaseResponse:
    form = forms.JoinForm()
    if not form.validate_on_submit():
        flash("Please choose your tier again.", "error")
        return redirect(url_for("billing.support"))
    try:
        price = service.choose_price(
            db.session,
            tier_id=form.tier.data,
            interval=form.interval.data,
            currency=form.currency.data,
            amount_text=form.amount.data or "",
            currencies=current_app.config["CURRENCIES"],
        )
        attempt = service.start_join(db.session, current_user, price, form.token.data)
    except service.BillingError as error:
        db.session.rollback()
        flash(error.message, "error")
        return redirect(
            url_for("billing.membership" if "already" in error.message else "billing.support")
        )
    db.session.commit()
    return redirect(url_for("billing.join_card", token=attempt.token))


def _attempt_or_404(token: str) -> Any:
    attempt = service.find_attempt(db.session, current_user, token)
    if attempt is None:
        abort(404)
    return attempt


@bp.get("/support/join/<token>")
@login_required
def join_card(token: str) -> str:
    attempt = _attempt_or_404(token)
    return render_template("billing/join_card.html", attempt=attempt, **_card_page_context())


@bp.post("/support/join/<token>/setup")
@login_required
@limiter.limit(PAY_LIMIT)
def join_setup(token: str) -> Any:
    _attempt_or_404(token)
    return _gateway_call(lambda s, g: service.card_setup(s, g, current_user))


@bp.post("/support/join/<token>/subscribe")
@login_required
@limiter.limit(PAY_LIMIT)
def join_subscribe(token: str) -> Any:
    attempt = _attempt_or_404(token)
    setup_intent_id = _setup_intent_id()
    return _gateway_call(service.subscribe, attempt, setup_intent_id)


@bp.post("/support/join/<token>/confirm")
@login_required
def join_confirm(token: str) -> Any:
    attempt = _attempt_or_404(token)
    if attempt.subscription is None:
        return _json_error("Please enter your card first.", 400)
    return _gateway_call(service.outcome_of, attempt.subscription)


# --- giving once -------------------------------------------------------------------------------


def _gift_form(**kwargs: Any) -> forms.GiftForm:
    form = forms.GiftForm(**kwargs)
    form.currency.choices = [SelectChoice(code, code) for code in current_app.config["CURRENCIES"]]
    return form


@bp.route("/support/give", methods=["GET", "POST"])
@limiter.limit(PAY_LIMIT, methods=["POST"])
def give() -> Any:
    form = _gift_form(token=service.new_token()) if request.method == "GET" else _gift_form()
    if form.validate_on_submit():
        member = current_user if current_user.is_authenticated else None
        try:
            payment = service.start_gift(
                db.session,
                member=member,
                email=form.email.data or None,
                amount_text=form.amount.data,
                currency=form.currency.data,
                currencies=current_app.config["CURRENCIES"],
                minimum_major=current_app.config["DONATION_MINIMUM"],
                token=form.token.data,
            )
        except service.BillingError as error:
            db.session.rollback()
            show_error(form, error.message, error.field)
        else:
            db.session.commit()
            return redirect(url_for("billing.gift_card", token=payment.idempotency_token))
    status = 400 if form.errors else 200
    return render_template(
        "billing/give.html", form=form, enabled=billing_enabled(), test_mode=test_mode()
    ), status


def _gift_or_404(token: str) -> Payment:
    payment = db.session.scalar(select(Payment).where(Payment.idempotency_token == token))
    if payment is None or payment.kind is not PaymentKind.DONATION:
        abort(404)
    if payment.member_id is not None and (
        not current_user.is_authenticated or current_user.id != payment.member_id
    ):
        abort(404)
    return payment


@bp.get("/support/give/<token>")
def gift_card(token: str) -> Any:
    payment = _gift_or_404(token)
    if payment.status.value == "succeeded":
        return redirect(url_for("billing.gift_thanks", token=token))
    return render_template("billing/gift_card.html", payment=payment, **_card_page_context())


@bp.post("/support/give/<token>/setup")
@limiter.limit(PAY_LIMIT)
def gift_setup(token: str) -> Any:
    payment = _gift_or_404(token)
    return _gateway_call(service.gift_card_setup, payment)


@bp.post("/support/give/<token>/pay")
@limiter.limit(PAY_LIMIT)
def gift_pay(token: str) -> Any:
    payment = _gift_or_404(token)
    return _gateway_call(service.pay_gift, payment, _setup_intent_id())


@bp.post("/support/give/<token>/confirm")
def gift_confirm(token: str) -> Any:
    payment = _gift_or_404(token)
    return _gateway_call(service.confirm_gift, payment)


@bp.get("/support/give/<token>/thanks")
def gift_thanks(token: str) -> str:
    payment = _gift_or_404(token)
    return render_template("billing/gift_thanks.html", payment=payment)


# --- My membership -----------------------------------------------------------------------------


@bp.after_request
def never_cache_private(response: Response) -> Response:
    if request.path.startswith("/membership"):
        response.headers["Cache-Control"] = "no-store"
    return response


def _change_form(subscription: Any) -> forms.ChangePlanForm:
    form = forms.ChangePlanForm()
    currency = subscription.price.currency
    choices = []
    for tier in service.offered_tiers(db.session):
        for interval in (Interval.MONTH, Interval.YEAR):
            price = tier.listed_price(interval, currency)
            if price is not None and price.id != subscription.price_id:
                label = f"{tier.name}, {format_money(price.amount, currency)} a {interval.value}"
                choices.append(SelectChoice(price.id, label))
    form.price.choices = choices
    return form


@bp.get("/membership")
@login_required
def membership() -> str:
    subscription = service.current_subscription(db.session, current_user)
    state = sync.state_of(subscription)
    card = _card_on_file() if subscription is not None and subscription.live else None
    return render_template(
        "billing/membership.html",
        subscription=subscription,
        state=state,
        card=card,
        payments=service.payment_history(db.session, current_user),
        change_form=_change_form(subscription)
        if subscription is not None and subscription.live
        else None,
        pause_form=forms.PauseForm(formdata=None),
        cancel_form=forms.CancelForm(formdata=None),
        button_form=ButtonForm(formdata=None),
    )


def _card_on_file() -> str | None:
    """The member's card as we store it; Stripe is asked only if nothing was ever stored."""
    if not billing_enabled():
        return None
    asks_stripe = current_user.card_synced_at is None and current_user.stripe_customer_id
    try:
        card = service.card_summary(db.session, get_gateway(), current_user)
    except GatewayError:
        db.session.rollback()
        return None
    if asks_stripe:
        db.session.commit()  # keep what was fetched; a view that fetched nothing writes nothing
    return card


def _manage(action: Any, *args: Any, done: str) -> BaseResponse:
    try:
        action(db.session, get_gateway(), current_user, *args)
    except service.BillingError as error:
        db.session.rollback()
        flash(error.message, "error")
    except GatewayUnavailable:
        db.session.rollback()
        flash(
            "The payment service is unavailable right now. Nothing changed; try again soon.",
            "error",
        )
    except GatewayError:
        db.session.rollback()
        flash("Stripe refused that change. Nothing changed.", "error")
    else:
        db.session.commit()
        flash(done, "success")
    return redirect(url_for("billing.membership"))


@bp.post("/membership/change")
@login_required
def change() -> BaseResponse:
    subscription = service.current_subscription(db.session, current_user)
    if subscription is None or not subscription.live:
        flash("You have no membership to change.", "error")
        return redirect(url_for("billing.membership"))
    form = _change_form(subscription)
    if not form.validate_on_submit():
        flash("Choose the membership you want.", "error")
        return redirect(url_for("billing.membership"))
    price = db.session.get(Price, form.price.data)
    return _manage(service.change_price, price, done="Your membership is changed.")


@bp.post("/membership/pause")
@login_required
def pause() -> BaseResponse:
    form = forms.PauseForm()
    if not form.validate_on_submit():
        flash("A pause lasts one, two or three months.", "error")
        return redirect(url_for("billing.membership"))
    return _manage(service.pause, form.months.data, done="Your membership is paused.")


@bp.post("/membership/resume")
@login_required
def resume() -> BaseResponse:
    if not ButtonForm().validate_on_submit():
        abort(400)
    return _manage(service.resume, done="Welcome back: your membership is running again.")


@bp.post("/membership/cancel")
@login_required
def cancel() -> BaseResponse:
    form = forms.CancelForm()
    if not form.validate_on_submit():
        flash("Please keep the reason under 500 characters.", "error")
        return redirect(url_for("billing.membership"))
    return _manage(
        service.cancel,
        form.reason.data or "",
        done="Your membership will end at the end of the period you have paid for.",
    )


@bp.post("/membership/undo-cancel")
@login_required
def undo_cancel() -> BaseResponse:
    if not ButtonForm().validate_on_submit():
        abort(400)
    return _manage(service.undo_cancel, done="Your membership will go on. Thank you!")


@bp.get("/membership/card")
@login_required
def card() -> str:
    return render_template("billing/update_card.html", card=_card_on_file(), **_card_page_context())


@bp.post("/membership/card/setup")
@login_required
@limiter.limit(PAY_LIMIT)
def card_setup() -> Any:
    return _gateway_call(lambda s, g: service.card_setup(s, g, current_user))


@bp.post("/membership/card")
@login_required
@limiter.limit(PAY_LIMIT)
def card_save() -> Any:
    return _gateway_call(
        lambda s, g, i: service.update_card(s, g, current_user, i), _setup_intent_id()
    )


@bp.get("/membership/receipts/<int:payment_id>")
@login_required
def receipt(payment_id: int) -> str:
    payment = db.session.get(Payment, payment_id)
    if payment is None or payment.member_id != current_user.id:
        abort(404)
    return render_template("billing/receipt.html", payment=payment)


# --- Stripe webhooks ---------------------------------------------------------------------------


@bp.post("/webhooks/stripe")
@csrf.exempt
@limiter.exempt  # a 429 would only make Stripe send the event again later
def stripe_webhook() -> tuple[Response, int]:
    """Verify, store once, then process now or, with a queue (REDIS_URL), queue it.

    400 for anything unverified. Without a queue, 500 when processing failed. With one, 202 as
    soon as the event is stored and queued, and 503 when it could not be: a non-2xx answer is
    what makes Stripe deliver the event again, so nothing is acknowledged that was not kept.
    """
    gateway = get_gateway()
    try:
        event = gateway.parse_webhook(
            request.get_data(cache=False), request.headers.get("Stripe-Signature")
        )
    except InvalidWebhook as exc:
        return jsonify(error="invalid webhook", message=str(exc)), 400
    if queue.enabled(current_app.config):
        try:
            result = webhooks.receive_later(db.session, event, current_app.config)
        except webhooks.NotAccepted:
            message = "The event could not be stored or queued; deliver it again later."
            return jsonify(error="unavailable", message=message, received=False), 503
        status = 202 if result is webhooks.Delivery.QUEUED else 200
        return jsonify(received=True, result=result.value), status
    result = webhooks.receive(db.session, gateway, event)
    if result is webhooks.Delivery.FAILED:
        return jsonify(received=True, processed=False), 500
    return jsonify(received=True, result=result.value), 200
