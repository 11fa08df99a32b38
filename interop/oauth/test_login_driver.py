"""The form logic of login_driver on pages shaped like the contract's
hosted pages (warden's are not built yet) and like oidc-provider's: which
form, which fields, which button. No server needed."""

import pytest

from login_driver import SignInError, fill, parse_forms, pick_form

WARDEN_LOGIN = """<!doctype html><html><body>
<form method="post" action="/logout"><button>Sign out</button></form>
<form method="post" action="/login?return_to=%2Fauthorize%3Fclient_id%3Dx%26state%3D%C3%A9">
  <input type="hidden" name="csrf" value="t&amp;ok">
  <label>Username <input name="username" autocomplete="username" autofocus></label>
  <label>Password <input type="password" name="password"></label>
  <input type="checkbox" name="remember" value="yes">
  <button type="submit">Sign in</button>
</form></body></html>"""

WARDEN_CONSENT = """<form method=post action='/authorize/consent'>
  <input type=hidden name=csrf value=abc>
  <input type=hidden name=request value="r1">
  <textarea name="note">hi</textarea>
  <button name="decision" value="deny">Deny</button>
  <button name="decision" value="allow" type="submit">Allow</button>
  <button type="button">Help</button>
</form>"""

OIDC_PROVIDER_CONSENT = """<form autocomplete="off" action="/interaction/u1" method="post">
  <input type="hidden" name="prompt" value="consent"/>
  <button autofocus type="submit" class="login login-submit">Continue</button>
</form>"""


def test_login_form_keeps_hidden_fields_and_fills_the_named_username_field():
    form = pick_form(parse_forms(WARDEN_LOGIN))
    assert form.action.startswith("/login?return_to=")
    kind, data = fill(form, "username", "alice", "pw")
    assert kind == "login"
    # The unchecked checkbox is not sent; the button has no name.
    assert data == [("csrf", "t&ok"), ("username", "alice"), ("password", "pw")]


def test_login_form_without_the_expected_username_field_is_an_error():
    with pytest.raises(SignInError):
        fill(pick_form(parse_forms(WARDEN_LOGIN)), "login", "alice", "pw")


def test_consent_form_submits_decision_allow():
    form = pick_form(parse_forms(WARDEN_CONSENT))
    kind, data = fill(form, "username", "alice", "pw")
    assert kind == "consent"
    assert data == [("csrf", "abc"), ("request", "r1"), ("note", "hi"), ("decision", "allow")]


def test_a_single_unnamed_submit_button_is_pressed():
    kind, data = fill(pick_form(parse_forms(OIDC_PROVIDER_CONSENT)), "login", "alice", "pw")
    assert (kind, data) == ("consent", [("prompt", "consent")])


def test_two_unnamed_buttons_are_ambiguous():
    page = '<form method="post"><button>Yes</button><button>No</button></form>'
    with pytest.raises(SignInError):
        fill(pick_form(parse_forms(page)), "username", "alice", "pw")


# oidc-provider's logout confirmation (rpInitiatedLogout's default
# logoutSource): the buttons sit outside the form and name it with `form=`.
OIDC_PROVIDER_LOGOUT = """<div class="container">
  <h1>Do you want to sign-out from 127.0.0.1:5123?</h1>
  <form id="op.logoutForm" method="post" action="http://127.0.0.1:5123/session/end/confirm"><input type="hidden" name="xsrf" value="x1"/></form>
  <button autofocus type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
  <button type="submit" form="op.logoutForm">No, stay signed in</button>
</div>"""


def test_controls_outside_a_form_belong_to_the_form_named_by_their_form_attribute():
    (form,) = parse_forms(OIDC_PROVIDER_LOGOUT)
    assert form.id == "op.logoutForm" and form.method == "post"
    assert form.fields == [("xsrf", "hidden", "x1")]
    assert form.buttons == [("logout", "yes"), (None, "")]
    # a control naming no form on the page belongs to none
    assert parse_forms('<button form="nope" name="x">x</button>') == []
