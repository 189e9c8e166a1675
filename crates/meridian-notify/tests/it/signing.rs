//! Signatures checked by an independent implementation: the Python `standardwebhooks`
//! package (the Standard Webhooks reference library), also across a secret rotation.

use crate::{request, skip_or_fail, test_config, Fixture, Received, Receiver};
use meridian_notify::{DeliveryId, DeliveryState};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/verify_webhook.py")
}

/// Whether python3 with `standardwebhooks` is here; skips loudly (or fails in CI) if not.
fn python_ready() -> bool {
    let ok = Command::new("python3").args(["-c", "import standardwebhooks"]).output().is_ok_and(|o| o.status.success());
    if !ok {
        skip_or_fail("python3 with the standardwebhooks package (pip install standardwebhooks)");
    }
    ok
}

/// Runs the Python verifier on what the receiver got; true if `secret` verifies it.
fn python_verifies(received: &Received, secret: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("received.json");
    let json = serde_json::json!({"headers": received.headers, "body": String::from_utf8(received.body.to_vec()).unwrap()});
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    let output = Command::new("python3").arg(script()).arg(&path).arg(secret).output().unwrap();
    match output.status.code() {
        Some(0) => true,
        Some(1) => false,
        _ => panic!("verifier failed: {}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_verify_with_the_python_standard_webhooks_library() {
    if !python_ready() {
        return;
    }
    let receiver = Receiver::ok("127.0.0.1").await;
    let f = Fixture::start(test_config()).await;
    let endpoint = f.endpoint(&receiver.url(), &[]).await;
    let r = request("req-1", "trigger.fired");
    f.emit(std::slice::from_ref(&r)).await;
    let id = DeliveryId::derive(&r.id, &endpoint.id);
    f.wait_state(&id, DeliveryState::Delivered, Duration::from_secs(10)).await;

    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let got = &received[0];
    assert_eq!(got.webhook_id(), id.as_str());
    assert_eq!(got.headers["content-type"], "application/json");
    assert_eq!(got.headers["webhook-signature"].split(' ').count(), 1, "one active secret, one signature");
    let body: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(body["type"], "trigger.fired");
    assert_eq!(body["data"]["request"], "req-1");

    assert!(python_verifies(got, &endpoint.secrets[0].secret), "the endpoint's secret verifies");
    assert!(!python_verifies(got, &meridian_notify::signing::generate_secret()), "another secret does not");
    let mut tampered = got.clone();
    tampered.body = bytes::Bytes::from(String::from_utf8(got.body.to_vec()).unwrap().replace("req-1", "req-2"));
    assert!(!python_verifies(&tampered, &endpoint.secrets[0].secret), "a changed body does not verify");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_rotation_both_secrets_verify_and_after_the_grace_only_the_new_one() {
    if !python_ready() {
        return;
    }
    let receiver = Receiver::ok("127.0.0.1").await;
    let f = Fixture::start(test_config()).await;
    let endpoint = f.endpoint(&receiver.url(), &[]).await;
    let old_secret = endpoint.secrets[0].secret.clone();
    let grace = Duration::from_millis(1_500);
    let rotated = f.notifier.rotate_secret(&endpoint.id, Some(grace)).await.unwrap();
    assert_eq!(rotated.secrets.len(), 2);
    let new_secret = rotated.secrets[1].secret.clone();
    assert_ne!(old_secret, new_secret);
    assert!(rotated.secrets[0].expires_ms.is_some() && rotated.secrets[1].expires_ms.is_none());

    let during = request("during-rotation", "trigger.fired");
    f.emit(std::slice::from_ref(&during)).await;
    f.wait_state(&DeliveryId::derive(&during.id, &endpoint.id), DeliveryState::Delivered, Duration::from_secs(10)).await;
    let got = receiver.received().pop().unwrap();
    assert_eq!(got.headers["webhook-signature"].split(' ').count(), 2, "both secrets sign during the grace period");
    assert!(python_verifies(&got, &old_secret), "the old secret verifies during the grace period");
    assert!(python_verifies(&got, &new_secret), "the new secret verifies during the grace period");

    let expires = rotated.secrets[0].expires_ms.unwrap();
    let wait = (expires - crate::now_ms()).max(0) as u64 + 50;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let after = request("after-rotation", "trigger.fired");
    f.emit(std::slice::from_ref(&after)).await;
    f.wait_state(&DeliveryId::derive(&after.id, &endpoint.id), DeliveryState::Delivered, Duration::from_secs(10)).await;
    let got = receiver.received().pop().unwrap();
    assert_eq!(got.webhook_id(), DeliveryId::derive(&after.id, &endpoint.id).as_str());
    assert_eq!(got.headers["webhook-signature"].split(' ').count(), 1, "only the new secret signs after the grace period");
    assert!(python_verifies(&got, &new_secret), "the new secret verifies after the grace period");
    assert!(!python_verifies(&got, &old_secret), "the old secret no longer verifies after the grace period");

    // A second rotation drops the expired secret.
    let again = f.notifier.rotate_secret(&endpoint.id, None).await.unwrap();
    assert_eq!(again.secrets.len(), 2);
    assert_eq!(again.secrets[0].secret, new_secret);
    f.stop().await;
}
