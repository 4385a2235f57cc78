"""Routes of the voting area: the ballot, proposing, voting, results, "You asked, we covered",
and staff's rounds and moderation (under /staff/voting).

Each POST parses its form, calls one service function, commits, and redirects; a refusal is a
4xx page that says why, with nothing changed. Pages (GET) only read.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from membership.accounts.access import login_required, staff_required
from membership.database import utcnow
from membership.extensions import db, limiter
from membership.forms import show_error
from membership.staff import service as staff_audit
from membership.voting import forms, rules, service
from membership.voting.models import Round, Topic
from membership.voting.rules import RoundPhase, TopicStatus

bp = Blueprint("voting", __name__)


@bp.after_request
def staff_pages_are_not_cached(response: Response) -> Response:
    if request.path.startswith("/staff/"):
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.app_context_processor
def voting_helpers() -> dict[str, Any]:
    return {
        "topic_status_label": lambda status: rules.STATUS_LABELS[TopicStatus(status)],
        "utc_time": lambda moment: moment.strftime("%-d %B %Y, %H:%M UTC") if moment else "",
    }


def _member() -> Any:
    return current_user if current_user.is_authenticated else None


def _refuse(error: service.VotingError, back: str | None = None) -> ResponseReturnValue:
    db.session.rollback()
    return render_template(
        "voting/refused.html", message=error.message, back=back or url_for("voting.index")
    ), error.status


def _field_errors(form: Any) -> dict[str, str]:
    return {name: " ".join(errors) for name, errors in form.errors.items() if name != "csrf_token"}


# --- readers -----------------------------------------------------------------------------------


@bp.get("/vote")
def index() -> ResponseReturnValue:
    return _index()


def _index(
    proposal_errors: dict[int, dict[str, str]] | None = None,
    proposal_values: dict[int, dict[str, str]] | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    now = utcnow()
    member = _member()
    patron_votes = service.voting_perks(db.session, member, now) if member else 0
    rounds = service.rounds_by_phase(db.session, now)
    pages = [
        service.round_page(db.session, r, now, member=member, votes_per_round=patron_votes)
        for r in rounds[RoundPhase.OPEN]
    ]
    upcoming = rounds[RoundPhase.UPCOMING]
    proposals = service.my_proposals(db.session, member) if member else []
    return render_template(
        "voting/index.html",
        pages=pages,
        upcoming=upcoming,
        patron=patron_votes > 0,
        proposals=proposals,
        proposal_errors=proposal_errors or {},
        proposal_values=proposal_values or {},
    ), status


@bp.get("/vote/rounds/<int:round_id>")
def round_results(round_id: int) -> ResponseReturnValue:
    round_ = db.session.get(Round, round_id)
    if round_ is None:
        return _refuse(service.VotingError("There is no such voting round.", 404))
    page = service.round_page(db.session, round_, utcnow(), member=_member())
    return render_template("voting/round.html", page=page)


@bp.get("/vote/topics/<int:topic_id>")
def topic(topic_id: int) -> ResponseReturnValue:
    found = db.session.get(Topic, topic_id)
    if found is None or not service.topic_visible_to(found, _member()):
        return _refuse(service.VotingError("There is no such topic.", 404))
    now = utcnow()
    counts = service.vote_counts(db.session, found.round, now)
    current = service.phase(found.round, now)
    staff = bool(_member() and current_user.is_staff)
    show = rules.results_visible(found.round.results_live, current, staff=staff)
    return render_template(
        "voting/topic.html",
        topic=found,
        phase=current,
        votes=counts.get(found.id, 0) if show else None,
        history=found.history,
        is_proposer=_member() is not None and found.proposer_id == current_user.id,
    )


@bp.get("/vote/covered")
def covered() -> ResponseReturnValue:
    rounds = service.covered(db.session, utcnow())
    return render_template("voting/covered.html", rounds=rounds)


def _per_member() -> str:
    """Limits count per patron, not per address (many readers share one at a newsroom event)."""
    return f"member:{current_user.get_id()}"


# A person clicks a few times a minute; a script clicks far more. Over the limit: a 429 page.
VOTE_LIMIT = "60 per minute"
PROPOSE_LIMIT = "10 per minute"
voting_limit = limiter.shared_limit(VOTE_LIMIT, scope="votes", key_func=_per_member)


@bp.post("/vote/rounds/<int:round_id>/propose")
@login_required
@limiter.limit(PROPOSE_LIMIT, key_func=_per_member)
def propose(round_id: int) -> ResponseReturnValue:
    form = forms.TopicForm()
    if not form.validate():
        values = {"title": form.title.data or "", "why": form.why.data or ""}
        if db.session.get(Round, round_id) is None:
            return _refuse(service.VotingError("There is no such voting round.", 404))
        return _index({round_id: _field_errors(form)}, {round_id: values}, 400)
    try:
        service.propose_topic(
            db.session, current_user, round_id, form.title.data, form.why.data, utcnow()
        )
    except service.VotingError as error:
        if error.field:
            db.session.rollback()
            values = {"title": form.title.data or "", "why": form.why.data or ""}
            return _index({round_id: {error.field: error.message}}, {round_id: values}, 400)
        return _refuse(error)
    db.session.commit()
    flash("Thank you! Your topic is waiting for moderation; we will email you.", "success")
    return redirect(url_for("voting.index"))


def _back_to_ballot(topic_id: int) -> str:
    """Where to go after voting: the page the form was on, if it is one of ours."""
    if request.form.get("next") == "round":
        found = db.session.get(Topic, topic_id)
        if found is not None:
            return url_for("voting.round_results", round_id=found.round_id)
    return url_for("voting.index")


@bp.post("/vote/topics/<int:topic_id>/vote")
@login_required
@voting_limit
def vote(topic_id: int) -> ResponseReturnValue:
    try:
        service.cast_vote(db.session, current_user, topic_id, utcnow())
    except service.VotingError as error:
        return _refuse(error, _back_to_ballot(topic_id))
    db.session.commit()
    flash("Your vote is in.", "success")
    return redirect(_back_to_ballot(topic_id))


@bp.post("/vote/topics/<int:topic_id>/unvote")
@login_required
@voting_limit
def unvote(topic_id: int) -> ResponseReturnValue:
    try:
        service.withdraw_vote(db.session, current_user, topic_id, utcnow())
    except service.VotingError as error:
        return _refuse(error, _back_to_ballot(topic_id))
    db.session.commit()
    flash("You took back your vote; you can give it to another topic.", "success")
    return redirect(_back_to_ballot(topic_id))


# --- staff -------------------------------------------------------------------------------------


@bp.get("/staff/voting")
@staff_required
def staff_rounds() -> ResponseReturnValue:
    now = utcnow()
    rounds = db.session.scalars(
        db.select(Round).order_by(Round.closes_at.desc(), Round.id.desc())
    ).all()
    return render_template(
        "voting/staff_rounds.html",
        rounds=[(r, service.phase(r, now)) for r in rounds],
    )


@bp.route("/staff/voting/rounds/new", methods=["GET", "POST"])
@staff_required
def staff_new_round() -> ResponseReturnValue:
    form = forms.RoundForm()
    if form.is_submitted():
        if form.validate():
            fields = service.RoundFields(
                title=form.title.data,
                description=form.description.data or "",
                opens_at=form.utc("opens_at"),
                closes_at=form.utc("closes_at"),
                results_live=form.results_live.data,
                staff_see_voters=form.staff_see_voters.data,
                drop_votes_of_lapsed=form.drop_votes_of_lapsed.data,
            )
            try:
                created = service.create_round(db.session, current_user, fields, utcnow())
            except service.VotingError as error:
                db.session.rollback()
                show_error(form, error.message, error.field)
            else:
                _audit("round.create", "round", created.id, {"title": created.title})
                db.session.commit()
                flash("The round is set up. Add the first topics.", "success")
                return redirect(url_for("voting.staff_round", round_id=created.id))
        return render_template("voting/staff_new_round.html", form=form), 400
    return render_template("voting/staff_new_round.html", form=form)


def _staff_round_page(
    round_id: int,
    errors: dict[str, dict[str, str]] | None = None,
    values: dict[str, dict[str, str]] | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    round_ = db.session.get(Round, round_id)
    if round_ is None:
        return _refuse(
            service.VotingError("There is no such voting round.", 404),
            url_for("voting.staff_rounds"),
        )
    page = service.round_page(db.session, round_, utcnow(), staff=True)
    return render_template(
        "voting/staff_round.html",
        page=page,
        errors=errors or {},
        values=values or {},
        coverage=[(s.value, rules.STATUS_LABELS[s]) for s in rules.COVERAGE_STATUSES],
    ), status


@bp.get("/staff/voting/rounds/<int:round_id>")
@staff_required
def staff_round(round_id: int) -> ResponseReturnValue:
    return _staff_round_page(round_id)


def _audit(action: str, target_type: str, target_id: int, after: dict[str, Any] | None) -> None:
    """The staff area's audit entry for a voting change (committed with it)."""
    staff_audit.record(
        db.session, current_user, action, target_type, target_id, None, after, request.remote_addr
    )


def _staff_done(round_id: int, message: str) -> ResponseReturnValue:
    db.session.commit()
    flash(message, "success")
    return redirect(url_for("voting.staff_round", round_id=round_id))


def _staff_refused(
    error: service.VotingError, round_id: int | None, key: str, values: dict[str, str]
) -> ResponseReturnValue:
    """A refusal about one field goes next to it on the round page; others get a page."""
    db.session.rollback()
    if error.field and round_id is not None:
        return _staff_round_page(round_id, {key: {error.field: error.message}}, {key: values}, 400)
    return _refuse(
        error,
        url_for("voting.staff_round", round_id=round_id)
        if round_id
        else url_for("voting.staff_rounds"),
    )


def _round_of(topic_id: int) -> int | None:
    found = db.session.get(Topic, topic_id)
    return found.round_id if found is not None else None


@bp.post("/staff/voting/rounds/<int:round_id>/topics")
@staff_required
def staff_add_topic(round_id: int) -> ResponseReturnValue:
    form = forms.TopicForm()
    values = {"title": form.title.data or "", "why": form.why.data or ""}
    if db.session.get(Round, round_id) is None:
        return _refuse(service.VotingError("There is no such voting round.", 404))
    if not form.validate():
        return _staff_round_page(round_id, {"new": _field_errors(form)}, {"new": values}, 400)
    try:
        service.add_topic(
            db.session, current_user, round_id, form.title.data, form.why.data, utcnow()
        )
    except service.VotingError as error:
        return _staff_refused(error, round_id, "new", values)
    _audit("topic.add", "round", round_id, {"title": form.title.data})
    return _staff_done(round_id, "The topic is on the ballot.")


@bp.post("/staff/voting/rounds/<int:round_id>/close")
@staff_required
def staff_close_round(round_id: int) -> ResponseReturnValue:
    try:
        service.close_round(db.session, current_user, round_id, utcnow())
    except service.VotingError as error:
        return _refuse(error, url_for("voting.staff_rounds"))
    _audit("round.close", "round", round_id, None)
    return _staff_done(round_id, "The round is closed and its results are final.")


@bp.post("/staff/voting/topics/<int:topic_id>/approve")
@staff_required
def staff_approve(topic_id: int) -> ResponseReturnValue:
    round_id = _round_of(topic_id)
    try:
        service.approve_topic(db.session, current_user, topic_id, utcnow())
    except service.VotingError as error:
        return _staff_refused(error, round_id, str(topic_id), {})
    _audit("topic.approve", "topic", topic_id, {"status": "approved"})
    return _staff_done(round_id or 0, "Approved: the topic is on the ballot.")


@bp.post("/staff/voting/topics/<int:topic_id>/reject")
@staff_required
def staff_reject(topic_id: int) -> ResponseReturnValue:
    form = forms.RejectForm()
    round_id = _round_of(topic_id)
    values = {"reason": form.reason.data or ""}
    if round_id is not None and not form.validate():
        return _staff_round_page(round_id, {str(topic_id): _field_errors(form)}, {}, 400)
    try:
        service.reject_topic(db.session, current_user, topic_id, form.reason.data, utcnow())
    except service.VotingError as error:
        return _staff_refused(error, round_id, str(topic_id), values)
    _audit("topic.reject", "topic", topic_id, {"status": "rejected", "reason": form.reason.data})
    return _staff_done(round_id or 0, "Rejected; the proposer has been told why.")


@bp.post("/staff/voting/topics/<int:topic_id>/merge")
@staff_required
def staff_merge(topic_id: int) -> ResponseReturnValue:
    form = forms.MergeForm()
    round_id = _round_of(topic_id)
    into = form.into.data if form.validate() else None
    try:
        service.merge_topic(db.session, current_user, topic_id, into, utcnow())
    except service.VotingError as error:
        return _staff_refused(error, round_id, str(topic_id), {})
    _audit("topic.merge", "topic", topic_id, {"into": into})
    return _staff_done(round_id or 0, "Merged; the proposer has been told.")


@bp.post("/staff/voting/topics/<int:topic_id>/status")
@staff_required
def staff_status(topic_id: int) -> ResponseReturnValue:
    form = forms.StatusForm()
    round_id = _round_of(topic_id)
    values = {"story_url": form.story_url.data or "", "note": form.note.data or ""}
    if round_id is not None and not form.validate():
        return _staff_round_page(round_id, {str(topic_id): _field_errors(form)}, {}, 400)
    try:
        service.set_coverage(
            db.session,
            current_user,
            topic_id,
            form.status.data,
            story_url=form.story_url.data,
            note=form.note.data,
            now=utcnow(),
        )
    except service.VotingError as error:
        return _staff_refused(error, round_id, str(topic_id), values)
    _audit("topic.coverage", "topic", topic_id, {"status": form.status.data, **values})
    return _staff_done(round_id or 0, "Saved. Readers see it on the topic's page.")
