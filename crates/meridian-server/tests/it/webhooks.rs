//! Notifications end to end through the server: a webhook endpoint on a real receiver on
//! loopback, a notification request in the log, the signed delivery, the delivery log,
//! manual redelivery (audited), and the SSRF guard's default refusal of loopback.

use crate::harness::{TestServer, MASTER};
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use meridian_log::{AppendRecord, TopicName};
use meridian_notify::NotificationRequest;
use parking_lot::Mutex;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) type Received = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A receiver on 127.0.0.1 that records what it gets and answers 204.
pub(crate) async fn receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let store = received.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let store = store.clone();
        async move {
            store.lock().push((headers, body));
            StatusCode::NO_CONTENT
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

async fn wait_for(received: &Received, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while received.lock().len() < n {
        assert!(Instant::now() < deadline, "{} of {n} deliveries arrived", received.lock().len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_request_is_delivered_signed_logged_and_can_be_redelivered() {
    let t = TestServer::start_with(|c| c.notify.network.allow_loopback = true);
    t.server.spawn_background_tasks();
    t.app_with_key("shop", &["read"]).await;
    let (url, received) = receiver().await;
    let created = t.post("/v1/apps/shop/webhooks", MASTER, json!({"url": url, "event_types": ["trigger.fired"]}).to_string()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.json);
    let secret = created.json["secrets"][0]["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let id = created.json["id"].as_str().unwrap().to_owned();
    assert!(t.get("/v1/apps/shop/webhooks", MASTER).await.json["webhooks"][0].get("secrets").is_none(), "lists carry no secrets");

    let request = NotificationRequest {
        id: "n-1".into(),
        app: meridian_event::AppId::new("shop").unwrap(),
        event_type: "trigger.fired".into(),
        payload: json!({"user": "ann", "trigger": "first_checkin"}),
        created_ms: meridian_event::Timestamp::now().millis(),
        endpoint: None,
        bare: false,
    };
    let topic = TopicName::new("notifications").unwrap();
    let record = AppendRecord { key: Bytes::from("ann"), value: Bytes::from(request.to_record_value()), timestamp: request.created_ms };
    t.server.log().append(&topic, vec![record]).await.unwrap();
    wait_for(&received, 1).await;
    let (headers, body) = received.lock()[0].clone();
    let webhook_id = headers["webhook-id"].to_str().unwrap().to_owned();
    assert!(headers["webhook-signature"].to_str().unwrap().starts_with("v1,"));
    assert!(headers.contains_key("webhook-timestamp"));
    let sent: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(sent["data"]["trigger"], "first_checkin");

    let deliveries = t.get("/v1/apps/shop/deliveries", MASTER).await;
    let delivery = &deliveries.json["deliveries"][0];
    assert_eq!(delivery["id"], webhook_id.as_str());
    // The state turns delivered once the worker has recorded the attempt.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let detail = t.get(&format!("/v1/apps/shop/deliveries/{webhook_id}"), MASTER).await;
        if detail.json["delivery"]["state"] == "delivered" {
            assert_eq!(detail.json["attempts"][0]["status"], 204);
            break;
        }
        assert!(Instant::now() < deadline, "{:?}", detail.json);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let again = t.post(&format!("/v1/apps/shop/deliveries/{webhook_id}/redeliver"), MASTER, Body::empty()).await;
    assert_eq!(again.status, StatusCode::OK, "{:?}", again.json);
    wait_for(&received, 2).await;
    assert_eq!(received.lock()[1].0["webhook-id"].to_str().unwrap(), webhook_id, "the same id, so receivers can tell");
    let audit = t.get("/v1/apps/shop/audit?action=delivery.redeliver", MASTER).await;
    assert_eq!(audit.json["entries"][0]["target"], webhook_id.as_str());

    // A test event goes to this endpoint alone, whatever its event types.
    let test = t.post(&format!("/v1/apps/shop/webhooks/{id}/test"), MASTER, Body::empty()).await;
    assert_eq!(test.status, StatusCode::ACCEPTED, "{:?}", test.json);
    wait_for(&received, 3).await;
    let (headers, body) = received.lock()[2].clone();
    assert_eq!(headers["webhook-id"].to_str().unwrap(), test.json["delivery_id"].as_str().unwrap());
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&body).unwrap()["type"], "webhook.test");

    // Other apps see nothing of it.
    t.app_with_key("blog", &["read"]).await;
    assert_eq!(t.get(&format!("/v1/apps/blog/webhooks/{id}"), MASTER).await.code(), "unknown_webhook");
    assert_eq!(t.get(&format!("/v1/apps/blog/deliveries/{webhook_id}"), MASTER).await.code(), "unknown_delivery");
    for (uri, code) in [("/v1/apps/shop/deliveries?state=lost", "invalid_state"), ("/v1/apps/shop/deliveries?limit=0", "invalid_limit")] {
        assert_eq!(t.get(uri, MASTER).await.code(), code, "{uri}");
    }
}

#[tokio::test]
async fn loopback_and_metadata_urls_are_refused_by_default() {
    let t = TestServer::start();
    t.app_with_key("shop", &["read"]).await;
    for url in ["http://127.0.0.1:9/hook", "http://169.254.169.254/latest/meta-data", "http://[::1]:9/", "http://localhost:9/", "ftp://example.com/"] {
        let reply = t.post("/v1/apps/shop/webhooks", MASTER, json!({"url": url}).to_string()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{url}: {:?}", reply.json);
        assert!(["ssrf_refused", "invalid_url"].contains(&reply.code()), "{url}: {}", reply.code());
    }
    assert!(t.get("/v1/apps/shop/webhooks", MASTER).await.json["webhooks"].as_array().unwrap().is_empty());
}
