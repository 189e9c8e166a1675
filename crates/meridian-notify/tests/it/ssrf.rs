//! The SSRF guard: refusals at endpoint creation and, for endpoints created under a looser
//! policy, at delivery (IP literals, a DNS name, the metadata address, a redirect), with
//! nothing reaching the refused receiver.

use crate::{app, request, test_config, Fixture, Receiver, Reply};
use meridian_notify::{AddressClass, DeliveryId, DeliveryState, NewEndpoint, Notifier, NotifyConfig, NotifyError};
use std::sync::Arc;
use std::time::Duration;

fn default_policy_config() -> NotifyConfig {
    let mut config = test_config();
    config.network = Default::default();
    config.max_attempts = 1;
    config
}

fn new_endpoint(url: &str) -> NewEndpoint {
    NewEndpoint { app: app(), url: url.into(), description: String::new(), event_types: vec![], disabled: false }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_policy_refuses_internal_urls_at_creation_naming_the_address() {
    let receiver = Receiver::ok("127.0.0.1").await;
    let port = receiver.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let (_log, store) = crate::open_data(dir.path());
    let notifier = Notifier::new(store, default_policy_config()).unwrap();
    let cases = [
        (format!("http://127.0.0.1:{port}/"), "127.0.0.1", AddressClass::Loopback),
        ("http://169.254.169.254/latest/meta-data/".to_owned(), "169.254.169.254", AddressClass::CloudMetadata),
        (format!("http://[::1]:{port}/"), "::1", AddressClass::Loopback),
        (format!("http://[::ffff:127.0.0.1]:{port}/"), "127.0.0.1", AddressClass::Loopback),
        ("http://10.0.0.5/hook".to_owned(), "10.0.0.5", AddressClass::Private),
        ("https://[fd00:ec2::254]/".to_owned(), "fd00:ec2::254", AddressClass::CloudMetadata),
    ];
    for (url, address, class) in cases {
        match notifier.create_endpoint(new_endpoint(&url)).await {
            Err(NotifyError::SsrfRefused { refusal, .. }) => {
                assert_eq!(refusal.class, class, "{url}");
                let message = NotifyError::SsrfRefused { url: url.clone(), refusal }.to_string();
                assert!(message.contains(address), "{message} names {address}");
            }
            other => panic!("{url} was not refused: {other:?}"),
        }
    }
    match notifier.create_endpoint(new_endpoint(&format!("http://localhost:{port}/"))).await {
        Err(NotifyError::SsrfRefused { refusal, .. }) => assert_eq!(refusal.class, AddressClass::Loopback),
        other => panic!("localhost was not refused: {other:?}"),
    }
    for url in ["ftp://example.com/", "not a url", "http://user:pw@example.com/", "/relative"] {
        assert!(matches!(notifier.create_endpoint(new_endpoint(url)).await, Err(NotifyError::InvalidUrl { .. })), "{url}");
    }
    assert!(notifier.list_endpoints(&app()).await.unwrap().is_empty(), "nothing refused was stored");
    assert!(receiver.received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_refused_on_the_address_connected_even_for_endpoints_created_under_a_looser_policy() {
    let receiver = Receiver::ok("127.0.0.1").await;
    let receiver_v6 = match tokio::net::TcpListener::bind("[::1]:0").await {
        Ok(probe) => {
            drop(probe);
            Some(Receiver::ok("::1").await)
        }
        Err(_) => None, // no IPv6 loopback on this machine
    };
    let port = receiver.addr.port();
    let f = Fixture::start(default_policy_config()).await;

    // Endpoints stored by a notifier whose policy allowed them (as if the policy was
    // tightened since, or DNS now answers differently).
    let mut loose = test_config();
    loose.network.allow = vec!["169.254.169.254/32".parse().unwrap()];
    let creator = Notifier::new(crate::kv(&f.store), loose).unwrap();
    let mut urls = vec![format!("http://127.0.0.1:{port}/hook"), "http://169.254.169.254/latest/meta-data/".to_owned(), format!("http://localhost:{port}/hook")];
    if let Some(v6) = &receiver_v6 {
        urls.push(format!("http://[::1]:{}/hook", v6.addr.port()));
    }
    let mut endpoints = Vec::new();
    for url in &urls {
        endpoints.push(creator.create_endpoint(new_endpoint(url)).await.unwrap());
    }
    let r = request("internal", "trigger.fired");
    f.emit(std::slice::from_ref(&r)).await;
    for (endpoint, url) in endpoints.iter().zip(&urls) {
        let detail = f.wait_state(&DeliveryId::derive(&r.id, &endpoint.id), DeliveryState::Dead, Duration::from_secs(10)).await;
        let attempt = &detail.attempts[0];
        assert_eq!(attempt.error_code.as_deref(), Some("ssrf_refused"), "{url}: {attempt:?}");
        assert!(attempt.status.is_none());
        assert!(attempt.error.as_deref().unwrap().contains("policy refuses"), "{:?}", attempt.error);
    }
    assert!(receiver.received().is_empty(), "nothing reached the loopback receiver");
    if let Some(v6) = &receiver_v6 {
        assert!(v6.received().is_empty(), "nothing reached the ::1 receiver");
    }
    assert_eq!(f.notifier.stats().ssrf_refused, urls.len() as u64);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_loopback_is_refused_and_not_followed_while_an_allowed_redirect_is() {
    let target = Receiver::ok("127.0.0.1").await;
    let target_url = target.url();
    let redirector = Receiver::start("127.0.0.2", move |_, path| match path {
        "/to-loopback" => Reply { location: Some(target_url.clone()), ..Reply::status(302) },
        "/to-self" => Reply { location: Some("/final".into()), ..Reply::status(307) },
        _ => Reply::status(200),
    })
    .await;
    let mut config = default_policy_config();
    config.network.allow = vec!["127.0.0.2/32".parse().unwrap()];
    let f = Fixture::start(config).await;
    let to_loopback = f.endpoint(&format!("http://{}/to-loopback", redirector.addr), &[]).await;
    let to_self = f.endpoint(&format!("http://{}/to-self", redirector.addr), &[]).await;
    let r = request("redirected", "trigger.fired");
    f.emit(std::slice::from_ref(&r)).await;

    let refused = f.wait_state(&DeliveryId::derive(&r.id, &to_loopback.id), DeliveryState::Dead, Duration::from_secs(10)).await;
    let attempt = &refused.attempts[0];
    assert_eq!(attempt.error_code.as_deref(), Some("ssrf_refused"), "{attempt:?}");
    assert!(attempt.error.as_deref().unwrap().contains("127.0.0.1"), "the refusal names the address: {:?}", attempt.error);
    assert_eq!(attempt.redirects, 1);

    let followed = f.wait_state(&DeliveryId::derive(&r.id, &to_self.id), DeliveryState::Delivered, Duration::from_secs(10)).await;
    assert_eq!(followed.attempts[0].redirects, 1);
    let paths: Vec<String> = redirector.received().iter().map(|r| r.path.clone()).collect();
    assert!(paths.contains(&"/to-loopback".to_owned()) && paths.contains(&"/to-self".to_owned()) && paths.contains(&"/final".to_owned()), "{paths:?}");
    let final_request = redirector.received().into_iter().find(|r| r.path == "/final").unwrap();
    assert_eq!(final_request.webhook_id(), DeliveryId::derive(&r.id, &to_self.id).as_str(), "the redirected post carries the signed headers");

    assert!(target.received().is_empty(), "nothing was received on 127.0.0.1");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_redirects_fail_the_attempt() {
    let looping = Receiver::start("127.0.0.1", |_, _| Reply { location: Some("/again".into()), ..Reply::status(308) }).await;
    let config = NotifyConfig { max_attempts: 1, max_redirects: 3, ..test_config() };
    let f = Fixture::start(config).await;
    let endpoint = f.endpoint(&looping.url(), &[]).await;
    let r = request("loop", "trigger.fired");
    f.emit(std::slice::from_ref(&r)).await;
    let detail = f.wait_state(&DeliveryId::derive(&r.id, &endpoint.id), DeliveryState::Dead, Duration::from_secs(10)).await;
    assert_eq!(detail.attempts[0].error_code.as_deref(), Some("too_many_redirects"));
    assert_eq!(detail.attempts[0].status, Some(308));
    assert_eq!(looping.received().len(), 4, "the first post and 3 redirects");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_loopback_lets_deliveries_to_127_0_0_1_through() {
    let receiver = Receiver::ok("127.0.0.1").await;
    let url = receiver.url();
    let strict = Notifier::new(Arc::new(meridian_state::MemoryStore::new()), default_policy_config()).unwrap();
    assert!(matches!(strict.create_endpoint(new_endpoint(&url)).await, Err(NotifyError::SsrfRefused { .. })));

    let config = NotifyConfig { network: meridian_notify::NetworkPolicy { allow_loopback: true, ..Default::default() }, ..test_config() };
    let f = Fixture::start(config).await;
    let endpoint = f.endpoint(&url, &[]).await;
    let r = request("loopback-ok", "trigger.fired");
    f.emit(std::slice::from_ref(&r)).await;
    f.wait_state(&DeliveryId::derive(&r.id, &endpoint.id), DeliveryState::Delivered, Duration::from_secs(10)).await;
    assert_eq!(receiver.received().len(), 1);
    f.stop().await;
}
