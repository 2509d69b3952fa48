#!/usr/bin/env python3
# -*- coding: utf-8 -*-
"""Generate token/signature test vectors for modules/token-auth with OUTSIDE code.

Every token in the JSON files next to this script was produced (or, for the RFC
vectors, copied) by published third-party libraries, not by our Rust code:

  * akamai.json     - akamai-edgeauth (module akamai.edgeauth, class EdgeAuth)
  * cloudfront.json - botocore.signers.CloudFrontSigner (+ cryptography for
                      RSA-SHA1 PKCS#1 v1.5, cross-checked against the `rsa` package)
  * jwt.json, jwks.json, jwt-*.pem
                    - RFC 7515 A.1/A.2/A.3 and RFC 8037 A.4 vectors taken from the
                      test file shipped inside the jwcrypto wheel (jwcrypto/tests.py),
                      plus tokens signed by PyJWT with our own keys.

Packages used (pip freeze of the venv that produced the committed files):
    akamai-edgeauth==0.3.2
    botocore==1.44.8
    cryptography==50.0.2
    jwcrypto==1.6.1
    PyJWT==2.15.1
    rsa==4.9.1
  (transitive: cffi==2.1.1 jmespath==1.1.0 pyasn1==0.6.5 pycparser==3.12
   python-dateutil==2.9.0.post0 six==1.17.0 typing_extensions==4.16.0 urllib3==2.8.0)
  Python 3.11.7

Rerun (from the repository root):
    python3 -m venv /tmp/fixture-venv
    /tmp/fixture-venv/bin/pip install akamai-edgeauth==0.3.2 botocore==1.44.8 \
        cryptography==50.0.2 jwcrypto==1.6.1 PyJWT==2.15.1 rsa==4.9.1
    /tmp/fixture-venv/bin/python modules/token-auth/testdata/generate.py

Determinism: all timestamps are fixed. Key material is read back from the files
already in this directory (jwt-*.pem, cloudfront.json, jwt.json) when present, and
only generated when missing (or with --new-keys). With the same keys, every
output is byte-identical on rerun EXCEPT the ES256 and PS256 signatures, which
are randomized by design (ECDSA nonce / PSS salt); they are still valid.

---------------------------------------------------------------------------
Akamai EdgeAuth rule, as read from akamai/edgeauth/edgeauth.py (0.3.2, identical
to akamai/EdgeAuth-Token-Python @ 25f7446afea0):

  token fields, joined with field_delimiter "~", in this fixed order, each only
  if set:
      ip=<esc(ip)>  st=<start>  exp=<end>  acl=<acl>  (ACL tokens only)
      id=<esc(session_id)>  data=<esc(payload)>  hmac=<hex digest>
  HMAC input = the same fields up to and including data (i.e. the token minus
  the trailing hmac=...), then, only for URL tokens, "url=<esc(url)>", then,
  only if a salt is configured, "salt=<salt>"; all joined with "~".
  So for URL tokens the url= field is in the HMAC input but NOT in the token.
  key = bytes.fromhex(key_hex); digest = hmac(key, input, sha256|sha1|md5).hexdigest()
  (lowercase hex).
  esc(x) = x                                   when escape_early is False
         = quote_plus(x) with every %XX lowercased (re.sub('(%..)', lower))
                                               when escape_early is True
    quote_plus(x) (Python 3, safe='') keeps only A-Z a-z 0-9 _ . - ~ , turns
    ' ' into '+', and percent-encodes every other byte of the UTF-8 encoding;
    in particular '/' -> %2f, ':' -> %3a, '=' -> %3d, '&' -> %26, '?' -> %3f,
    '*' -> %2a, '!' -> %21.
  escape_early applies to ip, id, data and url ONLY. The acl value is never
  escaped (not in the token, not in the HMAC input) even with escape_early=True.
  An ACL list is joined with acl_delimiter "!" before anything else happens
  (generate_acl_token(['/a/*','/b/*']) == generate_acl_token('/a/*!/b/*')).
  start_time is omitted when falsy (None or 0); no 'st=' field then.
  Token name (hdnts / __token__) is not part of the token value or HMAC input.
---------------------------------------------------------------------------
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import json
import os
import re
import sys
from collections import OrderedDict
from urllib.parse import quote_plus

HERE = os.path.dirname(os.path.abspath(__file__))

START = 1700000000
END = 1700003600


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def write_json(name, obj):
    path = os.path.join(HERE, name)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print("wrote", path)


def read_json(name):
    path = os.path.join(HERE, name)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def pkg_version(name):
    from importlib.metadata import version
    return version(name)


# ===========================================================================
# Akamai
# ===========================================================================

def akamai(new_keys):
    from akamai.edgeauth import EdgeAuth

    # Fixed keys (no randomness): a 32-byte and a 16-byte hex secret.
    KEY32 = bytes(range(0x10, 0x30)).hex()  # 101112...2f
    KEY16 = "52a152a152a152a152a152a152a152a1"

    def esc(text, escape_early):
        # Independent re-implementation of EdgeAuth._escape_early, used only to
        # assert that our written-down rule matches the library.
        if not escape_early:
            return text
        return re.sub(r"(%..)", lambda m: m.group(1).lower(), quote_plus(text))

    def expected_hmac_input(c):
        f = []
        if c["ip"]:
            f.append("ip=" + esc(c["ip"], c["escape_early"]))
        if c["start"]:
            f.append("st=%d" % c["start"])
        f.append("exp=%d" % c["end"])
        if c["acl"] is not None:
            f.append("acl=" + c["acl"])  # never escaped
        if c["session_id"]:
            f.append("id=" + esc(c["session_id"], c["escape_early"]))
        if c["payload"]:
            f.append("data=" + esc(c["payload"], c["escape_early"]))
        token_fields = list(f)
        if c["url"] is not None:
            f.append("url=" + esc(c["url"], c["escape_early"]))
        return "~".join(f), token_fields

    specs = [
        dict(name="acl-sha256", acl="/secure/*"),
        dict(name="acl-list-sha256", acl=["/secure/*", "/other/*"],
             note="generate_acl_token was given the Python list ['/secure/*', '/other/*']; "
                  "the library joins it with acl_delimiter '!' (same token as passing "
                  "the string '/secure/*!/other/*')"),
        dict(name="url-sha256", url="/secure/video/seg1.ts",
             note="URL token: no acl= and no url= field in the token, but 'url=/secure/video/seg1.ts' "
                  "is appended to the HMAC input"),
        dict(name="acl-ip-sha256", acl="/secure/*", ip="203.0.113.7"),
        dict(name="acl-session-id-sha256", acl="/secure/*", session_id="abc"),
        dict(name="acl-payload-sha256", acl="/secure/*", payload="hello"),
        dict(name="acl-sha1", acl="/secure/*", algorithm="sha1", key=KEY16),
        dict(name="acl-md5", acl="/secure/*", algorithm="md5", key=KEY16),
        dict(name="acl-escape-early-sha256", acl="/secure/a b/*", escape_early=True,
             note="escape_early does NOT touch the acl: the token carries the raw ACL "
                  "'/secure/a b/*' (with a space) and the HMAC is over the raw ACL"),
        dict(name="acl-no-start-sha256", acl="/secure/*", start=None,
             note="start_time=None: no st= field in the token or the HMAC input"),
        dict(name="url-escape-early-sha256", url="/secure/video/seg1.ts", escape_early=True,
             note="HMAC input ends with 'url=%2fsecure%2fvideo%2fseg1.ts' (quote_plus, lowercased hex)"),
        dict(name="url-escape-early-special-sha256", url="/secure/a b/seg1.ts?q=1&x=y*",
             escape_early=True,
             note="HMAC input ends with 'url=%2fsecure%2fa+b%2fseg1.ts%3fq%3d1%26x%3dy%2a'"),
        dict(name="url-all-fields-sha256", url="/secure/video/seg1.ts", ip="203.0.113.7",
             session_id="abc", payload="hello",
             note="token order ip,st,exp,id,data,hmac; HMAC input ip,st,exp,id,data,url"),
        dict(name="acl-escape-early-fields-sha256", acl="/secure/*", ip="2001:db8::1",
             session_id="a b", payload="x=1&y=2", escape_early=True,
             note="escape_early escapes ip/id/data in the token itself (and so in the HMAC input): "
                  "ip=2001%3adb8%3a%3a1, id=a+b, data=x%3d1%26y%3d2"),
    ]

    cases = []
    for s in specs:
        algorithm = s.get("algorithm", "sha256")
        key = s.get("key", KEY32)
        start = s.get("start", START)
        escape_early = s.get("escape_early", False)
        ea = EdgeAuth(key=key, algorithm=algorithm, ip=s.get("ip"), payload=s.get("payload"),
                      session_id=s.get("session_id"), start_time=start, end_time=END,
                      escape_early=escape_early)
        if "acl" in s:
            token = ea.generate_acl_token(s["acl"])
            acl = "!".join(s["acl"]) if isinstance(s["acl"], list) else s["acl"]
            if isinstance(s["acl"], list):
                assert token == ea.generate_acl_token(acl)
            url = None
        else:
            token = ea.generate_url_token(s["url"])
            acl, url = None, s["url"]
        c = OrderedDict(
            name=s["name"], token=token, key_hex=key, algorithm=algorithm, acl=acl, url=url,
            ip=s.get("ip"), session_id=s.get("session_id"), payload=s.get("payload"),
            start=start, end=END, escape_early=escape_early,
        )
        hin, token_fields = expected_hmac_input(c)
        digest = hmac.new(bytes.fromhex(key), hin.encode(), getattr(hashlib, algorithm)).hexdigest()
        assert token == "~".join(token_fields + ["hmac=" + digest]), (s["name"], token, hin)
        c["hmac_input"] = hin
        if s.get("note"):
            c["note"] = s["note"]
        cases.append(c)

    write_json("akamai.json", OrderedDict(
        produced_by="akamai-edgeauth %s (akamai.edgeauth.EdgeAuth.generate_acl_token / "
                    "generate_url_token), defaults field_delimiter='~', acl_delimiter='!', "
                    "no salt; see generate.py" % pkg_version("akamai-edgeauth"),
        token_name_note="'token' is the value only; on the wire it is sent as "
                        "hdnts=<token> (or __token__=<token>, the library default name) "
                        "in a query string, cookie or header",
        hmac_input_note="'hmac_input' is NOT produced by the library: generate.py rebuilds "
                        "it from the rule in its header comment and asserts that "
                        "HMAC(key, hmac_input) equals the library's hmac= value",
        cases=cases,
    ))


# ===========================================================================
# CloudFront
# ===========================================================================

def cloudfront(new_keys):
    from botocore.signers import CloudFrontSigner
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa as crsa
    import rsa as pyrsa

    KEY_PAIR_ID = "K2JCJMDEHXQW5F"
    old = None if new_keys else read_json("cloudfront.json")
    if old:
        priv = serialization.load_pem_private_key(old["private_key_pem"].encode(), None)
    else:
        priv = crsa.generate_private_key(public_exponent=65537, key_size=2048)
    priv_pem = priv.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()).decode()
    pub = priv.public_key()
    pub_pem = pub.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    pkcs1_pem = priv.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.TraditionalOpenSSL,
                                   serialization.NoEncryption())
    pyrsa_key = pyrsa.PrivateKey.load_pkcs1(pkcs1_pem)

    def rsa_signer(message):
        # As in the AWS docs' cryptography example: RSA PKCS#1 v1.5 with SHA-1.
        sig = priv.sign(message, padding.PKCS1v15(), hashes.SHA1())
        # Cross-check: the `rsa` package (botocore docstring example) gives the same bytes.
        assert sig == pyrsa.sign(message, pyrsa_key, "SHA-1")
        return sig

    signer = CloudFrontSigner(KEY_PAIR_ID, rsa_signer)

    def dt(ts):
        return datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc)

    HOST = "https://d111111abcdef8.cloudfront.net"
    specs = [
        dict(name="url-canned", kind="url", policy_type="canned",
             resource_url=HOST + "/secure/video/seg1.ts"),
        dict(name="url-custom-wildcard-ip", kind="url", policy_type="custom",
             resource_url=HOST + "/secure/video/seg1.ts", policy_resource=HOST + "/secure/*",
             dgt=START, ip="203.0.113.0/24"),
        dict(name="url-canned-existing-query", kind="url", policy_type="canned",
             resource_url=HOST + "/secure/video/seg1.ts?quality=hd",
             note="canned policy Resource includes the existing query string; signing "
                  "params are appended with '&'"),
        dict(name="cookie-canned", kind="cookie", policy_type="canned",
             resource_url=HOST + "/secure/video/seg1.ts"),
        dict(name="cookie-custom-wildcard", kind="cookie", policy_type="custom",
             resource_url=HOST + "/secure/video/seg1.ts", policy_resource=HOST + "/secure/*",
             dgt=START),
        # extras
        dict(name="url-custom-dlt-only", kind="url", policy_type="custom",
             resource_url=HOST + "/secure/video/seg1.ts", policy_resource=HOST + "/*"),
        dict(name="url-custom-single-ip", kind="url", policy_type="custom",
             resource_url=HOST + "/secure/video/seg1.ts", policy_resource=HOST + "/secure/*",
             ip="203.0.113.7",
             note="botocore.build_policy appends '/32' to an IP without a prefix length"),
    ]

    cases = []
    for s in specs:
        dgt = s.get("dgt")
        ip = s.get("ip")
        if s["policy_type"] == "canned":
            policy_resource = s["resource_url"]
            policy = signer.build_policy(policy_resource, dt(END))
        else:
            policy_resource = s["policy_resource"]
            policy = signer.build_policy(policy_resource, dt(END),
                                         date_greater_than=dt(dgt) if dgt else None,
                                         ip_address=ip)
        policy_b = policy.encode("utf8")
        c = OrderedDict(name=s["name"], kind=s["kind"], policy_type=s["policy_type"])
        if s["kind"] == "url":
            if s["policy_type"] == "canned":
                url = signer.generate_presigned_url(s["resource_url"], date_less_than=dt(END))
            else:
                url = signer.generate_presigned_url(s["resource_url"], policy=policy)
            c["url"] = url
            c["cookies"] = None
        else:
            sig = signer._url_b64encode(signer.rsa_signer(policy_b)).decode("utf8")
            cookies = OrderedDict()
            if s["policy_type"] == "canned":
                cookies["CloudFront-Expires"] = str(END)
            else:
                cookies["CloudFront-Policy"] = signer._url_b64encode(policy_b).decode("utf8")
            cookies["CloudFront-Signature"] = sig
            cookies["CloudFront-Key-Pair-Id"] = KEY_PAIR_ID
            c["url"] = None
            c["cookies"] = cookies
        c["resource_url"] = s["resource_url"]
        c["policy_resource"] = policy_resource
        c["policy_json"] = policy
        c["date_less_than"] = END
        c["date_greater_than"] = dgt
        c["ip_address"] = ip
        if s.get("note"):
            c["note"] = s["note"]
        if s["policy_type"] == "canned":
            c["policy_json_note"] = ("canned: policy_json is NOT transmitted; the verifier "
                                     "rebuilds it from the request URL and Expires and "
                                     "verifies the signature over it")

        # Self-check: verify the signature with the public key.
        if s["kind"] == "url":
            q = dict(p.split("=", 1) for p in c["url"].split("?", 1)[1].split("&"))
            sig_s, kp = q["Signature"], q["Key-Pair-Id"]
            if s["policy_type"] == "custom":
                assert q["Policy"] == signer._url_b64encode(policy_b).decode()
            else:
                assert q["Expires"] == str(END)
        else:
            sig_s, kp = c["cookies"]["CloudFront-Signature"], c["cookies"]["CloudFront-Key-Pair-Id"]
        assert kp == KEY_PAIR_ID
        sig_raw = base64.b64decode(sig_s.replace("-", "+").replace("_", "=").replace("~", "/"))
        pub.verify(sig_raw, policy_b, padding.PKCS1v15(), hashes.SHA1())
        if s["policy_type"] == "canned":
            assert policy == ('{"Statement":[{"Resource":"%s","Condition":{"DateLessThan":'
                              '{"AWS:EpochTime":%d}}}]}' % (s["resource_url"], END))
        cases.append(c)

    write_json("cloudfront.json", OrderedDict(
        produced_by="botocore %s botocore.signers.CloudFrontSigner (generate_presigned_url, "
                    "build_policy, _url_b64encode); RSA-SHA1 PKCS#1 v1.5 via cryptography %s, "
                    "byte-identical to rsa %s; see generate.py"
                    % (pkg_version("botocore"), pkg_version("cryptography"), pkg_version("rsa")),
        key_pair_id=KEY_PAIR_ID,
        private_key_pem=priv_pem,
        public_key_pem=pub_pem,
        cases=cases,
    ))


# ===========================================================================
# JWT / JWS
# ===========================================================================

def jwt_vectors(new_keys):
    import jwt as pyjwt
    from jwcrypto import jwk, jws
    from jwcrypto.common import json_encode
    from jwcrypto import tests as jwct  # the test module shipped in the jwcrypto wheel
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa as crsa

    jwcrypto_v = pkg_version("jwcrypto")
    pyjwt_v = pkg_version("PyJWT")
    src_file = "jwcrypto %s, jwcrypto/tests.py" % jwcrypto_v

    jwks = []
    cases = []
    rfc_private = OrderedDict()

    def public_jwk(private_jwk_dict, kid, alg):
        k = jwk.JWK(**private_jwk_dict)
        d = OrderedDict()
        if k["kty"] == "oct":
            d.update(kty="oct", k=private_jwk_dict["k"])
        else:
            pubd = k.export_public(as_dict=True)
            for f in ("kty", "crv", "n", "e", "x", "y"):
                if f in pubd:
                    d[f] = pubd[f]
        d.update(kid=kid, alg=alg, use="sig")
        return d

    def decode_part(p):
        raw = b64url_decode(p)
        try:
            return json.loads(raw)
        except ValueError:
            return None

    def add_rfc(name, source, compact, key_dict, kid, alg, where):
        pubj = public_jwk(key_dict, kid, alg)
        jwks.append(pubj)
        priv = OrderedDict(key_dict)
        priv.update(kid=kid, alg=alg)
        rfc_private[kid] = priv
        # verify with jwcrypto and with PyJWT's JWS layer using the JWKS entry
        t = jws.JWS()
        t.deserialize(compact)
        t.verify(jwk.JWK(**pubj), alg=alg)
        pk = pyjwt.PyJWK.from_dict(dict(pubj))
        pyjwt.api_jws.PyJWS().decode(compact, key=pk.key, algorithms=[alg])
        h, p, _ = compact.split(".")
        case = OrderedDict(name=name, source=source, source_detail=where, token=compact,
                           alg=alg, kid=kid, header=decode_part(h), claims=decode_part(p))
        if case["claims"] is None:
            case["payload_text"] = b64url_decode(p).decode("utf-8")
        case["kid_note"] = ("token header has no kid; 'kid' names the jwks.json entry to "
                            "verify with (select by alg / try candidates)")
        cases.append(case)

    def compact_from_octets(ex):
        return ".".join([b64url(ex["protected"].encode("utf-8")), b64url(ex["payload"]),
                         b64url(ex["signature"])])

    # --- RFC 7515 A.1 (HS256). Key: SymmetricKeys['keys'][1] (= RFC 7517 A.3 second
    #     key, "HMAC key used in JWS A.1 example"); octets: A1_protected/A1_payload/A1_signature.
    a1 = compact_from_octets(jwct.A1_example)
    assert a1 == ("eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9."
                  "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ."
                  "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
    # HS256 is deterministic: re-sign and compare
    mac = hmac.new(b64url_decode(jwct.A1_example["key"]["k"]),
                   a1.rsplit(".", 1)[0].encode(), hashlib.sha256).digest()
    assert b64url(mac) == a1.rsplit(".", 1)[1]
    a1_key = {"kty": "oct", "k": jwct.A1_example["key"]["k"]}
    add_rfc("rfc7515-a1-hs256", "RFC 7515 A.1", a1, a1_key, "rfc7515-a1", "HS256",
            src_file + ": A1_example (octet arrays A1_protected, A1_payload, A1_signature; "
            "key SymmetricKeys['keys'][1]) joined as base64url compact serialization")

    # --- RFC 7515 A.2 (RS256). RS256 (PKCS#1 v1.5) is deterministic.
    a2 = compact_from_octets(jwct.A2_example)
    # A6_serialized (RFC 7515 A.6, JSON serialization) repeats A.2's and A.3's
    # signatures as literal base64url strings - cross-check against them.
    a6 = json.loads(jwct.A6_serialized)
    assert a2.split(".")[2] == a6["signatures"][0]["signature"]
    assert a2.split(".")[1] == a6["payload"]
    add_rfc("rfc7515-a2-rs256", "RFC 7515 A.2", a2, jwct.A2_key, "rfc7515-a2", "RS256",
            src_file + ": A2_example (A2_protected, A2_payload=A1_payload, A2_signature; "
            "key A2_key); signature equals the RS256 signature in A6_serialized (RFC 7515 A.6)")

    # --- RFC 7515 A.3 (ES256). ECDSA is randomized; this is the RFC's fixed signature.
    a3 = compact_from_octets(jwct.A3_example)
    assert a3.split(".")[2] == a6["signatures"][1]["signature"]
    assert a3 == ("eyJhbGciOiJFUzI1NiJ9."
                  "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ."
                  "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q")
    add_rfc("rfc7515-a3-es256", "RFC 7515 A.3", a3, jwct.A3_key, "rfc7515-a3", "ES256",
            src_file + ": A3_example (A3_protected, A3_payload, A3_signature; key A3_key); "
            "signature equals the ES256 signature in A6_serialized / A7_example")

    # --- RFC 8037 A.4 (Ed25519). jwcrypto stores the compact form literally.
    e = jwct.E_Ed25519
    a4 = e["jws_serialization_compact"]
    ed_key = json.loads(e["key_json"])
    # Ed25519 is deterministic: re-sign with the RFC 8037 A.1 private key and compare.
    s = jws.JWS(e["payload"])
    s.add_signature(jwk.JWK(**ed_key), None, json_encode(e["protected_header"]), None)
    assert s.serialize(compact=True) == a4
    add_rfc("rfc8037-a4-eddsa", "RFC 8037 A.4", a4, ed_key, "rfc8037-a4", "EdDSA",
            src_file + ": E_Ed25519['jws_serialization_compact'] (literal string), key "
            "E_Ed25519['key_json'] (= RFC 8037 A.1 / PrivateKeys_EdDsa)")

    # --- Our own keys, tokens signed by PyJWT --------------------------------
    claims = OrderedDict([("sub", "viewer-42"), ("iss", "https://issuer.example"), ("aud", "edge"),
                          ("nbf", 1700000000), ("exp", 1700003600), ("paths", ["/secure/*"])])

    def load_or_make(fname, make):
        path = os.path.join(HERE, fname)
        if os.path.exists(path) and not new_keys:
            with open(path, "rb") as f:
                return serialization.load_pem_private_key(f.read(), None)
        k = make()
        with open(path, "wb") as f:
            f.write(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
        print("wrote", path)
        return k

    rs_key = load_or_make("jwt-rs256.pem", lambda: crsa.generate_private_key(65537, 2048))
    ps_key = load_or_make("jwt-ps256.pem", lambda: crsa.generate_private_key(65537, 2048))
    es_key = load_or_make("jwt-es256.pem", lambda: ec.generate_private_key(ec.SECP256R1()))
    ed_priv = load_or_make("jwt-ed25519.pem", ed25519.Ed25519PrivateKey.generate)

    old = None if new_keys else read_json("jwt.json")
    secrets = OrderedDict()
    for kid, n in (("edge-hs256", 32), ("edge-hs384", 48)):
        if old and kid in old.get("hmac_secrets_hex", {}):
            secrets[kid] = old["hmac_secrets_hex"][kid]
        else:
            secrets[kid] = os.urandom(n).hex()

    ours = [
        ("pyjwt-hs256", "HS256", "edge-hs256", bytes.fromhex(secrets["edge-hs256"])),
        ("pyjwt-hs384", "HS384", "edge-hs384", bytes.fromhex(secrets["edge-hs384"])),
        ("pyjwt-rs256", "RS256", "edge-rs256", rs_key),
        ("pyjwt-ps256", "PS256", "edge-ps256", ps_key),
        ("pyjwt-es256", "ES256", "edge-es256", es_key),
        ("pyjwt-eddsa", "EdDSA", "edge-ed25519", ed_priv),
    ]
    for name, alg, kid, key in ours:
        if isinstance(key, bytes):
            pubj = OrderedDict(kty="oct", k=b64url(key), kid=kid, alg=alg, use="sig")
        else:
            pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
            pd = jwk.JWK.from_pem(pem).export_public(as_dict=True)
            pubj = OrderedDict((f, pd[f]) for f in ("kty", "crv", "n", "e", "x", "y") if f in pd)
            pubj.update(kid=kid, alg=alg, use="sig")
        jwks.append(pubj)
        token = pyjwt.encode(dict(claims), key, algorithm=alg, headers={"kid": kid})
        # verify with PyJWT using the JWKS entry, at a fixed time inside [nbf, exp)
        pk = pyjwt.PyJWK.from_dict(dict(pubj))
        got = pyjwt.decode(token, key=pk.key, algorithms=[alg], audience="edge",
                           issuer="https://issuer.example",
                           options={"verify_exp": False, "verify_nbf": False})
        assert got == dict(claims)
        # and independently with jwcrypto
        t = jws.JWS()
        t.deserialize(token)
        t.verify(jwk.JWK(**pubj), alg=alg)
        h, p, _ = token.split(".")
        cases.append(OrderedDict(name=name, source="pyjwt %s" % pyjwt_v, token=token, alg=alg,
                                 kid=kid, header=decode_part(h), claims=decode_part(p)))

    write_json("jwks.json", {"keys": jwks})
    write_json("jwt.json", OrderedDict(
        produced_by="RFC vectors copied from %s; other tokens signed with PyJWT %s "
                    "(verified with PyJWT and jwcrypto); see generate.py" % (src_file, pyjwt_v),
        time_note="RFC 7515 payloads have exp=1300819380 (2011) and no nbf: verify them with "
                  "expiry checks disabled or a clock before that. PyJWT tokens are valid for "
                  "1700000000 <= now < 1700003600 (nbf/exp), aud 'edge', iss "
                  "'https://issuer.example'. RFC 8037 A.4's payload is not JSON "
                  "(claims null, see payload_text).",
        hmac_secrets_hex=secrets,
        rfc_private_jwks=rfc_private,
        cases=cases,
    ))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--new-keys", action="store_true",
                    help="regenerate RSA/EC/Ed25519 keys and HMAC secrets instead of "
                         "reusing those stored in this directory")
    a = ap.parse_args()
    akamai(a.new_keys)
    cloudfront(a.new_keys)
    jwt_vectors(a.new_keys)


if __name__ == "__main__":
    sys.exit(main())
