#!/usr/bin/python3
"""Verify a detached compact JWS with jwcrypto, an independent JOSE library.

Usage: verify_jwcrypto.py PUBKEY.pem FILE.jws FILE

Exit status: 0 if the signature verifies, 1 if it does not, 2 on bad usage
or input. Used by the export/jws Go tests (run with Debian's /usr/bin/python3
and python3-jwcrypto).
"""

import inspect
import sys

from jwcrypto import jwk, jws
from jwcrypto.common import base64url_encode

ALLOWED_ALGS = ["ES256", "EdDSA"]


def main(argv):
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], "rb") as f:
        key = jwk.JWK.from_pem(f.read())
    with open(argv[2], "r", encoding="ascii") as f:
        compact = f.read().strip()
    with open(argv[3], "rb") as f:
        payload = f.read()

    parts = compact.split(".")
    if len(parts) != 3 or parts[1] != "":
        print("not a detached compact JWS", file=sys.stderr)
        return 2

    token = jws.JWS()
    token.allowed_algs = ALLOWED_ALGS
    try:
        if "detached_payload" in inspect.signature(token.verify).parameters:
            # jwcrypto >= 1.3: verify a detached payload directly.
            token.deserialize(compact)
            token.verify(key, detached_payload=payload)
        else:
            # Older jwcrypto (Debian 12 ships 1.1): reattach the payload as
            # RFC 7515 appendix F describes and verify the complete JWS.
            attached = parts[0] + "." + base64url_encode(payload) + "." + parts[2]
            token.deserialize(attached, key)
    except jws.InvalidJWSSignature as e:
        print("jwcrypto: signature invalid: %s" % e, file=sys.stderr)
        return 1
    print("jwcrypto: OK alg=%s kid=%s" % (token.jose_header.get("alg"), token.jose_header.get("kid")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
