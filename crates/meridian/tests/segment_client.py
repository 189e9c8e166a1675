"""Sends events to Meridian with Segment's own published Python library
(segment-analytics-python), unchanged except for its host and write key.
Usage: segment_client.py HOST WRITE_KEY"""
import sys

import segment.analytics as analytics

errors = []
analytics.host = sys.argv[1]
analytics.write_key = sys.argv[2]
analytics.gzip = True
analytics.on_error = lambda error, batch: errors.append(error)

analytics.identify("seg-user", {"plan": "pro", "email": "ann@example.com"}, anonymous_id="seg-device")
analytics.track("seg-user", "Order Completed", {"sku": "10042", "revenue": 99.5, "currency": "CNY"})
analytics.track("seg-user", "Product Viewed", {"product_id": "10043"})
analytics.page("seg-user", "Shop", "Home", {"path": "/"})
analytics.screen("seg-user", "App", "Cart")
analytics.flush()
analytics.shutdown()

if errors:
    print("segment client errors:", errors, file=sys.stderr)
    sys.exit(1)
print("sent")
