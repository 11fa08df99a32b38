"""The one browser stand-in every Python OAuth interop test uses.

`sign_in(authorization_url, ...)` does what a person with a browser does,
through the hosted pages' HTML forms only (no back door, no knowledge of
the server's paths): it fetches the authorization URL with a cookie-keeping
session, follows redirects by hand, and on each page with a form

- a login form (the form with a password field): fills the username field
  (its name is the provider's: `username` at warden, `login` at
  oidc-provider's devInteractions) and `password`, keeps every other input
  as the page set it (hidden CSRF tokens, prompts, ...), and submits;
- a consent form: submits with the button `decision=allow` when there is
  one (warden), or the form's single submit button (oidc-provider's
  "Continue").

It stops at the first `Location` that starts with the client's redirect
URI (nothing listens there; it is never fetched) and returns that URL for
the client library to parse and validate.

`sign_out(end_session_url, post_logout_redirect_uri, session=...)` does the
same for RP-initiated logout: on a confirmation page it presses
`logout=yes` (oidc-provider's page, whose buttons sit outside the form and
name it with `form=`, as HTML allows), `decision=allow`, or the only
button, and it stops at the redirect to the post-logout redirect URI.
"""

from html.parser import HTMLParser
from urllib.parse import urljoin

import requests

TIMEOUT = 10
MAX_STEPS = 12
REDIRECTS = {301, 302, 303, 307, 308}


class SignInError(AssertionError):
    """The hosted pages did not lead back to the client."""


class Form:
    def __init__(self, attrs):
        self.id = attrs.get("id")
        self.action = attrs.get("action") or ""
        self.method = (attrs.get("method") or "get").lower()
        self.fields = []  # (name, type, value) of every <input>/<textarea>
        self.buttons = []  # (name, value) of every submit button

    def has_password(self):
        return any(kind == "password" for _, kind, _ in self.fields)

    def __repr__(self):
        return f"Form({self.method} {self.action!r}, fields={self.fields}, buttons={self.buttons})"


class FormParser(HTMLParser):
    """Every <form> of a page with its inputs and submit buttons."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms = []
        self._form = None
        self._textarea = None
        # controls whose `form=` names their form (HTML's form owner):
        # (form id, "fields" or "buttons", entry), attached in close()
        self._owned = []

    def close(self):
        super().close()
        for form_id, kind, entry in self._owned:
            for form in self.forms:
                if form.id == form_id:
                    getattr(form, kind).append(entry)
                    break

    def _add(self, a, kind, entry):
        if "form" in a:
            self._owned.append((a["form"], kind, entry))
        else:
            getattr(self._form, kind).append(entry)

    def handle_starttag(self, tag, attrs):
        a = {k: (v if v is not None else "") for k, v in attrs}
        if tag == "form":
            self._form = Form(a)
            self.forms.append(self._form)
        elif self._form is None and "form" not in a:
            return
        elif tag == "input":
            kind = a.get("type", "text").lower()
            name = a.get("name")
            if kind in ("submit", "image"):
                self._add(a, "buttons", (name, a.get("value", "")))
            elif kind in ("checkbox", "radio"):
                if name and "checked" in a:
                    self._add(a, "fields", (name, kind, a.get("value", "on")))
            elif name and kind not in ("button", "reset", "file"):
                self._add(a, "fields", (name, kind, a.get("value", "")))
        elif tag == "button":
            if a.get("type", "submit").lower() == "submit":
                self._add(a, "buttons", (a.get("name"), a.get("value", "")))
        elif tag == "textarea" and a.get("name") and self._form is not None:
            self._textarea = [a["name"], ""]

    def handle_data(self, data):
        if self._textarea is not None:
            self._textarea[1] += data

    def handle_endtag(self, tag):
        if tag == "textarea" and self._textarea is not None and self._form is not None:
            self._form.fields.append((self._textarea[0], "textarea", self._textarea[1]))
            self._textarea = None
        elif tag == "form":
            self._form = None


def parse_forms(html):
    parser = FormParser()
    parser.feed(html)
    parser.close()
    return parser.forms


def fill(form, username_field, username, password):
    """The body a browser would send for this form, and which kind it is."""
    data = [(name, value) for name, _, value in form.fields]
    if form.has_password():
        names = {name for name, _, _ in form.fields}
        if username_field not in names:
            raise SignInError(f"login form has no field {username_field!r}: {form}")
        data = [
            (name, username if name == username_field else password if kind == "password" else value)
            for (name, kind, value) in form.fields
        ]
        button = form.buttons[0] if form.buttons else (None, "")
        kind = "login"
    else:
        allow = [b for b in form.buttons if b == ("decision", "allow")]
        if allow:
            button = allow[0]
        elif len(form.buttons) == 1:
            button = form.buttons[0]
        else:
            raise SignInError(f"cannot tell which button of this form allows: {form}")
        kind = "consent"
    if button[0]:
        data.append(button)
    return kind, data


def pick_form(forms):
    with_password = [f for f in forms if f.has_password()]
    if with_password:
        return with_password[0]
    decisions = [f for f in forms if ("decision", "allow") in f.buttons]
    if decisions:
        return decisions[0]
    posts = [f for f in forms if f.method == "post"]
    if len(posts) == 1:
        return posts[0]
    raise SignInError(f"no login or consent form among {forms}")


def sign_in(
    authorization_url,
    redirect_uri,
    *,
    username_field,
    username,
    password,
    session=None,
    expect_login=None,
):
    """Drive the hosted pages from `authorization_url` to the redirect back.

    Returns `(callback_url, steps)`: the URL warden (or the reference
    server) sent the browser to, and the kinds of forms submitted on the way
    (e.g. ["login", "consent"]). `session` is the browser (its cookies);
    pass the same one to sign in again with the provider's browser session.
    `expect_login=False` fails if a password is asked for (single sign-on).
    """
    browser = session if session is not None else requests.Session()
    method, url, data = "GET", authorization_url, None
    steps = []
    trail = []
    for _ in range(MAX_STEPS):
        r = browser.request(method, url, data=data, allow_redirects=False, timeout=TIMEOUT)
        trail.append(f"{method} {url} -> {r.status_code}")
        if r.status_code in REDIRECTS:
            location = r.headers.get("Location")
            if not location:
                raise SignInError(f"redirect without Location: {trail}")
            target = urljoin(url, location)
            if target.startswith(redirect_uri):
                return target, steps
            if r.status_code in (307, 308):
                method, url = method, target
            else:
                method, url, data = "GET", target, None
            continue
        if r.status_code != 200 or "html" not in r.headers.get("Content-Type", ""):
            raise SignInError(f"unexpected answer {r.status_code}: {r.text[:2000]!r}; {trail}")
        form = pick_form(parse_forms(r.text))
        kind, data = fill(form, username_field, username, password)
        if kind == "login" and expect_login is False:
            raise SignInError(f"asked for a password again: {trail}")
        if kind == "login" and "login" in steps:
            # Never retry a password (the throttle counts failures).
            raise SignInError(f"login form shown again: {r.text[:2000]!r}; {trail}")
        steps.append(kind)
        method = "POST" if form.method == "post" else "GET"
        url = urljoin(url, form.action) if form.action else url
        if method == "GET":
            url = requests.Request("GET", url, params=data).prepare().url
            data = None
    raise SignInError(f"no redirect to {redirect_uri} after {MAX_STEPS} steps: {trail}")


def _is_sign_out(button):
    return button in (("logout", "yes"), ("decision", "allow"))


def sign_out(end_session_url, post_logout_redirect_uri, *, session):
    """Follow an end-session URL (RP-initiated logout) with the browser
    `session` to the redirect back to `post_logout_redirect_uri`, confirming
    on a logout page when one is shown.

    Returns `(callback_url, steps)`; steps is ["confirm"] when a page was
    confirmed, [] when none was shown.
    """
    method, url, data = "GET", end_session_url, None
    steps = []
    trail = []
    for _ in range(MAX_STEPS):
        r = session.request(method, url, data=data, allow_redirects=False, timeout=TIMEOUT)
        trail.append(f"{method} {url} -> {r.status_code}")
        if r.status_code in REDIRECTS:
            location = r.headers.get("Location")
            if not location:
                raise SignInError(f"redirect without Location: {trail}")
            target = urljoin(url, location)
            if target.startswith(post_logout_redirect_uri):
                return target, steps
            if r.status_code not in (307, 308):
                method, data = "GET", None
            url = target
            continue
        if r.status_code != 200 or "html" not in r.headers.get("Content-Type", ""):
            raise SignInError(f"unexpected answer {r.status_code}: {r.text[:2000]!r}; {trail}")
        if steps:
            raise SignInError(f"logout page shown again: {r.text[:2000]!r}; {trail}")
        forms = parse_forms(r.text)
        chosen = [f for f in forms if any(_is_sign_out(b) for b in f.buttons)]
        if not chosen and len(forms) == 1 and len(forms[0].buttons) == 1:
            chosen = forms
        if not chosen:
            raise SignInError(f"no logout confirmation among {forms}; {trail}")
        form = chosen[0]
        button = next((b for b in form.buttons if _is_sign_out(b)), form.buttons[0])
        data = [(name, value) for name, _, value in form.fields]
        if button[0]:
            data.append(button)
        steps.append("confirm")
        method = "POST" if form.method == "post" else "GET"
        url = urljoin(url, form.action) if form.action else url
        if method == "GET":
            url = requests.Request("GET", url, params=data).prepare().url
            data = None
    raise SignInError(f"no redirect to {post_logout_redirect_uri} after {MAX_STEPS} steps: {trail}")
