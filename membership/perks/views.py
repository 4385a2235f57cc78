"""Routes of the perks area: perks and posts for staff, updates and the wall for everyone,
and the patron's own settings (private feed, place on the wall) from My membership."""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from werkzeug.wrappers import Response as BaseResponse
from wtforms import SelectChoice

from membership.accounts.access import login_required, staff_required
from membership.extensions import db
from membership.forms import ButtonForm, Form, show_error
from membership.perks import forms, service
from membership.perks.models import Grant, Perk, PerkKind, Post
from membership.staff import service as staff_audit

bp = Blueprint("perks", __name__)

STAFF_PREFIXES = ("/staff/", "/membership/")


@bp.after_request
def never_cache_private(response: Response) -> Response:
    if request.path.startswith(STAFF_PREFIXES) or request.path.startswith("/updates/feed/"):
        response.headers["Cache-Control"] = "no-store"
    return response


def _apply_error(form: Form, error: service.PerkError) -> None:
    show_error(form, error.message, error.field)


def _status(form: Form) -> int:
    return 400 if form.form_errors or any(f.errors for f in form) else 200


# --- My membership: what the include perks/_my_perks.html shows ---------------------------------


def _my_perks() -> dict[str, Any] | None:
    """Called by the My membership page's perks section (lazily: other pages pay nothing)."""
    if not current_user.is_authenticated:
        return None
    dash = service.dashboard(db.session, current_user)
    wall_form = forms.WallForm(
        formdata=None,
        display_name=dash.wall.display_name if dash.wall else current_user.display_name,
        show_tier=dash.wall.show_tier if dash.wall else False,
    )
    return {"dash": dash, "wall_form": wall_form, "button_form": ButtonForm(formdata=None)}


@bp.app_context_processor
def perks_helpers() -> dict[str, Any]:
    return {"my_perks": _my_perks}


# --- perks (staff) -----------------------------------------------------------------------------


@bp.get("/staff/perks")
@staff_required
def staff_perks() -> str:
    tiers = service.tiers_in_order(db.session)
    return render_template(
        "perks/staff_perks.html",
        perks=service.all_perks(db.session),
        tiers=tiers,
        table=service.perk_table(db.session),
        kind_labels=forms.KIND_LABELS,
    )


def _perk_or_404(perk_id: int) -> Perk:
    perk = db.session.get(Perk, perk_id)
    if perk is None:
        abort(404)
    return perk


@bp.route("/staff/perks/new", methods=["GET", "POST"])
@bp.route("/staff/perks/<int:perk_id>", methods=["GET", "POST"])
@staff_required
def staff_perk(perk_id: int | None = None) -> Any:
    perk = _perk_or_404(perk_id) if perk_id is not None else None
    if perk is not None and request.method == "GET":
        form = forms.PerkForm(formdata=None, obj=perk, kind=perk.kind.value)
    else:
        form = forms.PerkForm()
    if form.validate_on_submit():
        fields = service.PerkFields(
            name=form.name.data.strip(),
            description=(form.description.data or "").strip(),
            kind=PerkKind(form.kind.data),
            votes=form.votes.data,
            reveal=(form.reveal.data or "").strip() or None,
            active=form.active.data,
        )
        try:
            saved = service.save_perk(db.session, perk, fields, key=(form.key.data or "").strip())
        except service.PerkError as error:
            db.session.rollback()
            _apply_error(form, error)
        else:
            _audit("perk.save", "perk", saved.id, _perk_json(saved))
            db.session.commit()
            flash(f"Saved {saved.name}.", "success")
            if perk is None:
                return redirect(url_for("perks.staff_perk_tiers", perk_id=saved.id))
            return redirect(url_for("perks.staff_perks"))
    return render_template("perks/staff_perk.html", form=form, perk=perk), _status(form)


@bp.route("/staff/perks/<int:perk_id>/tiers", methods=["GET", "POST"])
@staff_required
def staff_perk_tiers(perk_id: int) -> Any:
    perk = _perk_or_404(perk_id)
    tiers = service.tiers_in_order(db.session)
    form = forms.tier_decisions_form(tiers)
    if request.method == "GET":
        for tier_id, row in service.tier_decisions(db.session, perk).items():
            if forms.grant_field_name(tier_id) in form:
                form[forms.grant_field_name(tier_id)].data = row.grant.value
                form[forms.votes_field_name(tier_id)].data = row.votes
    if form.validate_on_submit():
        decisions: dict[int, tuple[Grant | None, int | None]] = {}
        for tier in tiers:
            choice = form[forms.grant_field_name(tier.id)].data
            decisions[tier.id] = (
                Grant(choice) if choice else None,
                form[forms.votes_field_name(tier.id)].data,
            )
        try:
            service.set_tier_decisions(db.session, perk, decisions)
        except service.PerkError as error:
            db.session.rollback()
            _apply_error(form, error)
        else:
            _audit(
                "perk.tiers",
                "perk",
                perk.id,
                {str(t): g.value for t, (g, _) in decisions.items() if g},
            )
            db.session.commit()
            flash(f"Saved which tiers get {perk.name}.", "success")
            return redirect(url_for("perks.staff_perks"))
    return render_template(
        "perks/staff_perk_tiers.html",
        form=form,
        perk=perk,
        tiers=tiers,
        grant_field=forms.grant_field_name,
        votes_field=forms.votes_field_name,
    ), _status(form)


# --- posts (staff) -----------------------------------------------------------------------------


@bp.get("/staff/posts")
@staff_required
def staff_posts() -> str:
    return render_template(
        "perks/staff_posts.html",
        posts=service.all_posts(db.session),
        button_form=ButtonForm(formdata=None),
    )


def _post_or_404(post_id: int) -> Post:
    post = db.session.get(Post, post_id)
    if post is None:
        abort(404)
    return post


def _post_form(post: Post | None) -> forms.PostForm:
    if post is not None and request.method == "GET":
        form = forms.PostForm(
            formdata=None,
            title=post.title,
            slug=post.slug,
            teaser=post.teaser,
            body=post.body_markdown,
            audience="all" if post.all_patrons else "tiers",
            tiers=[tier.id for tier in post.tiers],
        )
    else:
        form = forms.PostForm()
    form.tiers.choices = [
        SelectChoice(tier.id, tier.name) for tier in service.tiers_in_order(db.session)
    ]
    return form


@bp.route("/staff/posts/new", methods=["GET", "POST"])
@bp.route("/staff/posts/<int:post_id>", methods=["GET", "POST"])
@staff_required
def staff_post(post_id: int | None = None) -> Any:
    post = _post_or_404(post_id) if post_id is not None else None
    form = _post_form(post)
    if form.validate_on_submit():
        fields = service.PostFields(
            title=form.title.data.strip(),
            teaser=(form.teaser.data or "").strip(),
            body_markdown=form.body.data,
            all_patrons=form.audience.data == "all",
            tier_ids=list(form.tiers.data or []),
        )
        try:
            saved = service.save_post(
                db.session,
                post,
                fields,
                author=current_user,
                slug=(form.slug.data or "").strip(),
            )
        except service.PerkError as error:
            db.session.rollback()
            _apply_error(form, error)
        else:
            _audit("post.save", "post", saved.id, {"title": saved.title, "slug": saved.slug})
            db.session.commit()
            flash(f"Saved “{saved.title}”.", "success")
            return redirect(url_for("perks.staff_post", post_id=saved.id))
    return render_template(
        "perks/staff_post.html",
        form=form,
        post=post,
        button_form=ButtonForm(formdata=None),
    ), _status(form)


def _audit(action: str, target_type: str, target_id: int, after: dict[str, Any] | None) -> None:
    """The staff area's audit entry for this change (committed with it)."""
    staff_audit.record(
        db.session, current_user, action, target_type, target_id, None, after, request.remote_addr
    )


def _perk_json(perk: Perk) -> dict[str, Any]:
    return {"key": perk.key, "name": perk.name, "kind": perk.kind.value, "active": perk.active}


def _post_action(post_id: int, action: Any, done: str) -> BaseResponse:
    post = _post_or_404(post_id)
    if not ButtonForm().validate_on_submit():
        abort(400)
    action(db.session, post)
    _audit(f"post.{action.__name__.removesuffix('_post')}", "post", post.id, {"title": post.title})
    db.session.commit()
    flash(done.format(title=post.title), "success")
    return redirect(url_for("perks.staff_posts"))


@bp.post("/staff/posts/<int:post_id>/publish")
@staff_required
def staff_publish_post(post_id: int) -> BaseResponse:
    return _post_action(post_id, service.publish_post, "Published “{title}”.")


@bp.post("/staff/posts/<int:post_id>/unpublish")
@staff_required
def staff_unpublish_post(post_id: int) -> BaseResponse:
    return _post_action(post_id, service.unpublish_post, "“{title}” is a draft again.")


# --- patron-only updates -----------------------------------------------------------------------


def _viewer() -> tuple[Any, Any]:
    if not current_user.is_authenticated:
        return None, None
    return current_user, service.perks_for(db.session, current_user)


@bp.get("/updates")
def updates() -> str:
    member, perks = _viewer()
    posts = service.published_posts(db.session)
    return render_template(
        "perks/updates.html",
        entries=[(post, service.can_read(post, member, perks)) for post in posts],
    )


@bp.get("/updates/<slug>")
def update(slug: str) -> str:
    post = service.published_post(db.session, slug)
    if post is None:
        abort(404)
    member, perks = _viewer()
    return render_template(
        "perks/update.html",
        post=post,
        readable=service.can_read(post, member, perks),
        patron=perks is not None and perks.patron,
    )


@bp.get("/updates/feed/<token>.atom")
def feed(token: str) -> Response:
    """A member's private Atom feed: what they may read is decided at each request."""
    member = service.member_for_feed(db.session, token)
    if member is None:
        abort(404)
    entries = service.feed_entries(db.session, member)
    body = render_template(
        "perks/feed.xml",
        entries=entries,
        base_url=current_app.config["BASE_URL"],
        updated=max((e.post.updated_at for e in entries), default=None),
    )
    response = Response(body, mimetype="application/atom+xml")
    response.headers["X-Robots-Tag"] = "noindex"
    return response


@bp.post("/membership/feed")
@login_required
def create_feed() -> Any:
    if not ButtonForm().validate_on_submit():
        abort(400)
    token = service.create_feed_token(db.session, current_user)
    db.session.commit()
    url = current_app.config["BASE_URL"] + url_for("perks.feed", token=token)
    # Shown once, here: only a hash is kept, so there is nothing to show later.
    return render_template("perks/feed_created.html", feed_url=url)


@bp.post("/membership/feed/revoke")
@login_required
def revoke_feed() -> BaseResponse:
    if not ButtonForm().validate_on_submit():
        abort(400)
    revoked = service.revoke_feed_token(db.session, current_user)
    db.session.commit()
    flash(
        "Your private feed address no longer works." if revoked else "You had no private feed.",
        "success",
    )
    return redirect(url_for("billing.membership"))


# --- the supporters wall -----------------------------------------------------------------------


@bp.get("/supporters")
def supporters() -> str:
    return render_template("perks/supporters.html", lines=service.supporters_wall(db.session))


@bp.route("/membership/wall", methods=["GET", "POST"])
@login_required
def wall() -> Any:
    """Join the wall or change one's name there (the form is also on My membership)."""
    entry = service.wall_entry(db.session, current_user)
    if request.method == "GET":
        form = forms.WallForm(
            formdata=None,
            display_name=entry.display_name if entry else current_user.display_name,
            show_tier=entry.show_tier if entry else False,
        )
    else:
        form = forms.WallForm()
    if form.validate_on_submit():
        try:
            service.join_wall(
                db.session,
                current_user,
                display_name=form.display_name.data,
                show_tier=form.show_tier.data,
            )
        except service.PerkError as error:
            db.session.rollback()
            _apply_error(form, error)
        else:
            db.session.commit()
            flash("Thank you! Your name is on the supporters wall.", "success")
            return redirect(url_for("billing.membership"))
    dash = service.dashboard(db.session, current_user)
    return render_template(
        "perks/wall.html",
        form=form,
        entry=entry,
        eligible=dash.perks.has_kind("wall"),
        button_form=ButtonForm(formdata=None),
    ), _status(form)


@bp.post("/membership/wall/leave")
@login_required
def leave_wall() -> BaseResponse:
    if not ButtonForm().validate_on_submit():
        abort(400)
    removed = service.leave_wall(db.session, current_user)
    db.session.commit()
    flash(
        "Your name is off the supporters wall." if removed else "Your name was not on the wall.",
        "success",
    )
    return redirect(url_for("billing.membership"))
