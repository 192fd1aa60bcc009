"""Schemathesis hooks for the MWAA-compatible API's fuzz test (tests/tests/api/fuzz.rs): every
request to `/mwaa/...` is signed with AWS Signature V4 by botocore's own signer, as boto3 and the
AWS CLI sign theirs, with the access key in HANGAR_FUZZ_ACCESS_KEY_ID and
HANGAR_FUZZ_SECRET_ACCESS_KEY (service `airflow`, region `eu-west-1`).

The signature is added to the prepared request (a `requests` auth), so it covers the exact bytes
sent. Schemathesis' own probes without credentials (its `ignored_auth` check) go unsigned.
"""

import os
from urllib.parse import urlsplit

import schemathesis
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from requests.auth import AuthBase

REGION = "eu-west-1"
SERVICE = "airflow"


class SigV4(AuthBase):
    def __init__(self, key, secret):
        self.credentials = Credentials(key, secret)

    def __call__(self, r):
        if not urlsplit(r.url).path.startswith("/mwaa/"):
            return r
        # Only what a client signs: the host (botocore adds it from the URL) and the body's type.
        headers = {k: v for k, v in r.headers.items() if k.lower() == "content-type"}
        signed = AWSRequest(method=r.method, url=r.url, data=r.body or b"", headers=headers)
        SigV4Auth(self.credentials, SERVICE, REGION).add_auth(signed)
        for name in ("Authorization", "X-Amz-Date"):
            r.headers[name] = signed.headers[name]
        return r


schemathesis.auth.set_from_requests(
    SigV4(os.environ["HANGAR_FUZZ_ACCESS_KEY_ID"], os.environ["HANGAR_FUZZ_SECRET_ACCESS_KEY"])
)
