"""Creates a container in Azurite (the Azure Storage emulator) for the object-storage tests.

object_store reads and writes blobs but cannot create containers, and Azurite accepts only
signed requests, so this signs one Create Container call with the emulator's published
development key (Shared Key, Blob service version 2021-08-06).

Usage: azurite_container.py HOST PORT CONTAINER
"""
import base64
import hashlib
import hmac
import http.client
import sys
from email.utils import formatdate

ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (public, documented by Microsoft).
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def main() -> int:
    host, port, container = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    date, version = formatdate(usegmt=True), "2021-08-06"
    # Twelve standard fields (all empty for this call), the x-ms-* headers, the resource;
    # path-style emulator URLs put the account in the path, hence twice.
    string_to_sign = "\n".join(
        ["PUT"] + [""] * 11
        + [f"x-ms-date:{date}\nx-ms-version:{version}", f"/{ACCOUNT}/{ACCOUNT}/{container}\nrestype:container"]
    )
    mac = hmac.new(base64.b64decode(KEY), string_to_sign.encode(), hashlib.sha256)
    signature = base64.b64encode(mac.digest()).decode()
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request(
        "PUT",
        f"/{ACCOUNT}/{container}?restype=container",
        headers={
            "x-ms-date": date,
            "x-ms-version": version,
            "Authorization": f"SharedKey {ACCOUNT}:{signature}",
            "Content-Length": "0",
        },
    )
    status = conn.getresponse().status
    print(status)
    return 0 if status in (201, 409) else 1


if __name__ == "__main__":
    sys.exit(main())
