"""Verifies a received webhook with the independent Standard Webhooks reference library.

Usage: verify_webhook.py RECEIVED_JSON SECRET
RECEIVED_JSON holds {"headers": {name: value}, "body": "<exact body>"}.
Exit 0: the signature verifies with SECRET; 1: it does not (WebhookVerificationError);
2: anything else (bad input, library missing).
"""

import json
import sys

try:
    from standardwebhooks import Webhook
    from standardwebhooks.webhooks import WebhookVerificationError
except ImportError as e:  # the Rust test checks for the package before calling this
    print(f"standardwebhooks is not installed: {e}", file=sys.stderr)
    sys.exit(2)


def main() -> int:
    path, secret = sys.argv[1], sys.argv[2]
    with open(path, encoding="utf-8") as f:
        received = json.load(f)
    try:
        payload = Webhook(secret).verify(received["body"], received["headers"])
    except WebhookVerificationError as e:
        print(f"not verified: {e}")
        return 1
    print(f"verified: type={payload.get('type')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
