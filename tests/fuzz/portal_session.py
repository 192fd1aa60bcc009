"""Schemathesis hooks for the portal's fuzz test (tests/tests/api/fuzz.rs): signs in the way a
browser does (the sign-in form, its CSRF cookie, a token: HANGAR_FUZZ_TOKEN), keeps the session
cookie, and puts the session's CSRF token in every form; signs in again when a request has ended
the session (`POST /logout`). A check of its own sends every state-changing form again without
the CSRF token and wants it refused with 403 and the tenant's audit log (where every change is
written with the change) unchanged.
"""

import os
import re
from urllib.parse import urlencode, urlsplit

import requests
import schemathesis

BASE = os.environ["HANGAR_FUZZ_BASE_URL"]
TOKEN = os.environ["HANGAR_FUZZ_TOKEN"]
TENANT = os.environ["HANGAR_FUZZ_TENANT"]
COOKIE = "hangar_portal"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def sign_in():
    """A new session: its cookie and its CSRF token."""
    s = requests.Session()
    page = s.get(f"{BASE}/login", allow_redirects=False)
    form_csrf = CSRF.search(page.text).group(1)
    r = s.post(
        f"{BASE}/login",
        data={"token": TOKEN, "next": "/", "csrf_token": form_csrf},
        allow_redirects=False,
    )
    assert r.status_code == 303, f"signing in answered {r.status_code}: {r.text[:500]}"
    landing = s.get(BASE + r.headers["Location"], allow_redirects=False)
    return {"cookie": s.cookies[COOKIE], "csrf": CSRF.search(landing.text).group(1)}


SESSION = {"current": None}


@schemathesis.auth(refresh_interval=None)
class PortalSession:
    def get(self, case, context):
        if SESSION["current"] is None:
            SESSION["current"] = sign_in()
        return SESSION["current"]

    def set(self, case, data, context):
        case.cookies = {**(case.cookies or {}), COOKIE: data["cookie"]}
        if case.method.upper() == "POST" and isinstance(case.body, dict):
            # The CSRF token first, as the page's forms have it (an upload reads it first).
            rest = {k: v for k, v in case.body.items() if k != "csrf_token"}
            case.body = {"csrf_token": data["csrf"], **rest}


@schemathesis.hook
def after_call(context, case, response):
    if case.method.upper() == "POST" and urlsplit(response.request.url).path == "/logout":
        if response.status_code == 303:
            SESSION["current"] = None


def newest_audit_entry():
    """The id of the tenant's newest audit entry, read through the JSON API."""
    r = requests.get(
        f"{BASE}/v1/tenants/{TENANT}/audit",
        params={"limit": "1"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    r.raise_for_status()
    entries = r.json()["entries"]
    return entries[0]["id"] if entries else None


@schemathesis.check
def forms_without_the_csrf_token_change_nothing(ctx, response, case):
    """A signed-in POST without the session's CSRF token is refused (403) before anything
    changes; signed out, it goes to the sign-in page (303)."""
    if case.method.upper() != "POST" or not isinstance(case.body, dict) or "csrf_token" not in case.body:
        return None
    path = urlsplit(response.request.url).path
    if path == "/login" or response.status_code in (400, 413):
        return None
    cookie = (case.cookies or {}).get(COOKIE)
    cookies = {COOKIE: cookie} if cookie else None
    before = newest_audit_entry()
    if (case.media_type or "").startswith("multipart/"):
        r = requests.post(
            response.request.url,
            files=[("files", ("x.py", b"x = 1\n"))],
            cookies=cookies,
            allow_redirects=False,
        )
    else:
        fields = {k: v if isinstance(v, str) else str(v) for k, v in case.body.items() if k != "csrf_token"}
        r = requests.post(
            response.request.url,
            data=urlencode(fields),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            cookies=cookies,
            allow_redirects=False,
        )
    after = newest_audit_entry()
    assert after == before, f"POST {path} without the CSRF token changed the audit log ({before} -> {after})"
    if r.status_code == 303 and r.headers.get("Location", "").startswith("/login"):
        return None
    assert r.status_code == 403, (
        f"POST {path} without the CSRF token answered {r.status_code}, not 403"
    )
    return None
