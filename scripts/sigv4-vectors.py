#!/usr/bin/env python3
"""Writes the SigV4 test vectors that `tenants/src/sigv4.rs` is tested against.

Two sources, two fixtures under tenants/src/sigv4_vectors/:

* `botocore` (needs botocore): requests made by botocore's own MWAA client (service `airflow`,
  REST-JSON), signed by `botocore.auth.SigV4Auth` with fixed credentials at a frozen time, captured
  just before they would be sent. This is what `aws mwaa ...` and boto3 send to Hangar's
  MWAA-compatible API, so the verifier must accept exactly these. -> botocore.json

      /path/to/python-with-botocore scripts/sigv4-vectors.py botocore

* `aws-suite DIR`: AWS's published SigV4 test suite as kept by awslabs/aws-c-auth in
  tests/aws-signing-test-suite/v4/ (DIR is a checkout of that directory). Only the data is
  transcribed (request, canonical request, Authorization header); the S3-style `*-unnormalized`
  cases and the presigned-URL (`query-*`) files are left out: Hangar verifies the Authorization
  header of a non-S3 service. SOURCE (optional) says where DIR came from, e.g.
  awslabs/aws-c-auth@<commit>, and is kept in the fixture. -> aws-suite.json

      python3 scripts/sigv4-vectors.py aws-suite DIR [SOURCE]

Each vector: method, path and query as on the wire, headers as (name, value) pairs without the
Authorization header, body (UTF-8 text), the Authorization header the signer produced, the
X-Amz-Date timestamp and the canonical request the signer built.
"""

import datetime
import json
import logging
import os
import sys
from urllib.parse import urlsplit

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tenants", "src", "sigv4_vectors")

BOTOCORE_ACCESS_KEY = "AKIDHANGAREXAMPLE"
BOTOCORE_SECRET_KEY = "hangar/Example+Secret/K7MDENG0123456789abcd"
BOTOCORE_SESSION_TOKEN = "IQoJb3JpZ2luX2VjEHANGAR//////////wEaCWV1LXdlc3QtMSJGMEQCIExample=="
BOTOCORE_REGION = "eu-west-1"
BOTOCORE_TIME = datetime.datetime(2025, 3, 14, 9, 26, 53)


class _Captured(Exception):
    """Raised from the before-send hook so that nothing reaches the network."""

    def __init__(self, request):
        super().__init__("captured")
        self.request = request


class _CanonicalRequestLog(logging.Handler):
    """botocore logs the canonical request it signs at DEBUG; keep the last one."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.last = None

    def emit(self, record):
        if record.msg == "CanonicalRequest:\n%s":
            self.last = record.args[0]


def _botocore_host(url):
    # The Host header urllib3 will send, which is also what botocore signs (SigV4Auth adds
    # `host` from the URL when the request has none).
    from botocore.auth import _host_from_url

    return _host_from_url(url)


def botocore_vectors():
    import botocore.auth
    import botocore.session
    from botocore.config import Config

    # Freeze the signing time: SigV4Auth.add_auth reads it through this module-level name.
    botocore.auth.get_current_datetime = lambda: BOTOCORE_TIME
    log = _CanonicalRequestLog()
    auth_logger = logging.getLogger("botocore.auth")
    auth_logger.setLevel(logging.DEBUG)
    auth_logger.addHandler(log)

    session = botocore.session.get_session()

    def client(endpoint, token=None, host_prefix=True):
        c = session.create_client(
            "mwaa",
            region_name=BOTOCORE_REGION,
            endpoint_url=endpoint,
            aws_access_key_id=BOTOCORE_ACCESS_KEY,
            aws_secret_access_key=BOTOCORE_SECRET_KEY,
            aws_session_token=token,
            config=Config(inject_host_prefix=host_prefix),
        )

        def capture(request, **_):
            raise _Captured(request)

        c.meta.events.register("before-send.mwaa", capture)
        return c

    # MWAA's operations carry a host prefix (`api.`, `env.`), which botocore adds to a custom
    # endpoint too unless told not to: both are what a client may send.
    https = client("https://hangar.example.test")
    with_port = client("http://127.0.0.1:8080", host_prefix=False)
    with_token = client("https://hangar.example.test", token=BOTOCORE_SESSION_TOKEN)

    calls = [
        (
            "create-environment-put-json",
            https,
            "create_environment",
            dict(
                Name="my-env",
                DagS3Path="dags",
                ExecutionRoleArn="arn:aws:iam::123456789012:role/airflow",
                NetworkConfiguration={"SubnetIds": ["subnet-1", "subnet-2"]},
                SourceBucketArn="arn:aws:s3:::my-bucket",
                Tags={"team": "données"},
            ),
        ),
        ("update-environment-patch", https, "update_environment", dict(Name="my-env", MaxWorkers=5)),
        (
            "list-environments-query-port",
            with_port,
            "list_environments",
            dict(MaxResults=2, NextToken="abc+def"),
        ),
        ("get-environment-space-unicode", https, "get_environment", dict(Name="my env ü")),
        ("get-environment-slash", https, "get_environment", dict(Name="team/a")),
        ("get-environment-dot-dot", https, "get_environment", dict(Name="..")),
        (
            "tag-resource-arn-in-path",
            https,
            "tag_resource",
            dict(
                ResourceArn="arn:aws:airflow:eu-west-1:123456789012:environment/my-env",
                Tags={"a": "1"},
            ),
        ),
        (
            "untag-resource-repeated-query-key",
            https,
            "untag_resource",
            dict(
                ResourceArn="arn:aws:airflow:eu-west-1:123456789012:environment/my-env",
                tagKeys=["b", "a b", "a"],
            ),
        ),
        ("delete-environment-session-token", with_token, "delete_environment", dict(Name="my-env")),
        (
            "invoke-rest-api-post-json",
            https,
            "invoke_rest_api",
            dict(
                Name="my-env",
                Path="/dags/my_dag/dagRuns",
                Method="POST",
                QueryParameters={"limit": 10},
                Body={"conf": {"x": "y z"}},
            ),
        ),
        ("create-cli-token-host-prefix", https, "create_cli_token", dict(Name="my-env")),
    ]

    vectors = []
    for name, c, operation, params in calls:
        try:
            getattr(c, operation)(**params)
        except _Captured as captured:
            request = captured.request
        else:
            raise SystemExit(f"{name}: the request was not captured")
        url = urlsplit(request.url)
        headers = [("host", _botocore_host(request.url))]
        authorization = None
        for key, value in request.headers.items():
            if isinstance(value, bytes):
                value = value.decode("utf-8")
            if key.lower() == "authorization":
                authorization = value
            else:
                headers.append((key, value))
        body = request.body or b""
        if not isinstance(body, bytes):
            body = body.encode("utf-8")
        vectors.append(
            {
                "name": name,
                "method": request.method,
                "path": url.path,
                "query": url.query,
                "headers": headers,
                "body": body.decode("utf-8"),
                "authorization": authorization,
                "timestamp": BOTOCORE_TIME.strftime("%Y%m%dT%H%M%SZ"),
                "canonical_request": log.last,
            }
        )
    return {
        "_about": "Signed by botocore "
        + botocore.__version__
        + " SigV4Auth via its MWAA client; regenerate with "
        "`python scripts/sigv4-vectors.py botocore` (python with botocore). Do not edit by hand.",
        "access_key_id": BOTOCORE_ACCESS_KEY,
        "secret_access_key": BOTOCORE_SECRET_KEY,
        "region": BOTOCORE_REGION,
        "service": "airflow",
        "vectors": vectors,
    }


def _parse_http(text):
    """A request as the suite writes it: request line, `Name:value` lines (a line starting with
    whitespace continues the previous value), a blank line, the body."""
    head, _, body = text.partition("\n\n")
    lines = head.split("\n")
    method, _, rest = lines[0].partition(" ")
    target = rest.rsplit(" HTTP/", 1)[0]
    path, _, query = target.partition("?")
    headers = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + "\n" + line)
        else:
            name, _, value = line.partition(":")
            headers.append((name, value))
    return method, path, query, headers, body


def aws_suite_vectors(suite_dir, source):
    vectors = []
    skipped = []
    for name in sorted(os.listdir(suite_dir)):
        case = os.path.join(suite_dir, name)
        with open(os.path.join(case, "context.json")) as f:
            context = json.load(f)
        if not context.get("normalize", True):
            skipped.append(name)
            continue
        with open(os.path.join(case, "header-signed-request.txt"), newline="") as f:
            method, path, query, headers, body = _parse_http(f.read())
        with open(os.path.join(case, "header-canonical-request.txt"), newline="") as f:
            canonical_request = f.read()
        authorization = next(v for n, v in headers if n.lower() == "authorization")
        headers = [(n, v) for n, v in headers if n.lower() != "authorization"]
        timestamp = next(v for n, v in headers if n.lower() == "x-amz-date")
        assert context["credentials"]["access_key_id"] == "AKIDEXAMPLE"
        assert context["region"] == "us-east-1" and context["service"] == "service"
        vectors.append(
            {
                "name": name,
                "method": method,
                "path": path,
                "query": query,
                "headers": headers,
                "body": body,
                "authorization": authorization,
                "timestamp": timestamp,
                "canonical_request": canonical_request,
            }
        )
    return {
        "_about": f"AWS SigV4 test suite ({source} tests/aws-signing-test-suite/v4), "
        "Authorization-header cases of non-S3 services; left out (S3-style, no path normalization): "
        + ", ".join(skipped)
        + ". Regenerate with `python3 scripts/sigv4-vectors.py aws-suite DIR [SOURCE]`. "
        "Do not edit by hand.",
        "access_key_id": "AKIDEXAMPLE",
        "secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "region": "us-east-1",
        "service": "service",
        "vectors": vectors,
    }


def main(argv):
    if len(argv) == 2 and argv[1] == "botocore":
        fixture, out = botocore_vectors(), "botocore.json"
    elif len(argv) in (3, 4) and argv[1] == "aws-suite":
        source = argv[3] if len(argv) == 4 else "awslabs/aws-c-auth"
        fixture, out = aws_suite_vectors(argv[2], source), "aws-suite.json"
    else:
        raise SystemExit(__doc__)
    path = os.path.normpath(os.path.join(OUT_DIR, out))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(fixture, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {len(fixture['vectors'])} vectors to {path}")


if __name__ == "__main__":
    main(sys.argv)
