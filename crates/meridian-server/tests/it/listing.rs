//! The listing module through the server: bulk loads (jobs with progress, refused lines
//! by number), a durable catalog the index is rebuilt from at restart, product changes
//! visible to the next query, the JSON listing with its filters, sorts, facets, cursors and
//! every error code, history reading the same catalog, shopper pages with their page cache
//! and two fallback levels under an injected backend failure, the template editor, and
//! quality scores from behaviour in the log.

use crate::harness::{now_ms, Reply, TestServer, MASTER};
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

/// A SKU line: category path [1, 10 + sku % 2], brand and shop from the id.
fn sku(id: u64, spu: u64, price: u64, stock: u32) -> Value {
    json!({
        "sku": id, "spu": spu, "name": format!("Item {id}"), "image": format!("/img/{id}.jpg"),
        "category_path": [1, 10 + (id % 2) as u32], "brand": 100 + (id % 3) as u32, "shop": 200 + (id % 2) as u32,
        "price": price, "stock": stock, "on_shelf": true,
        "attributes": {"color": if id.is_multiple_of(2) { "red" } else { "blue" }}, "launch_time": 1_700_000_000_000i64 + id as i64,
        "metrics": {"sales": id * 10, "reviews": id}, "quality": id as f32,
    })
}

fn ndjson(lines: &[Value]) -> String {
    lines.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")
}

/// Ten SKUs of ten SPUs, prices 1000..=10000 (sku 1..=10).
fn ten() -> Vec<Value> {
    (1..=10u64).map(|i| sku(i, i, i * 1000, 5)).collect()
}

async fn load(t: &TestServer, app: &str, lines: &[Value]) -> Reply {
    let reply = t.post(&format!("/v1/apps/{app}/listing/catalog?wait=true"), MASTER, ndjson(lines)).await;
    assert!(reply.status.is_success(), "{:?}", reply.json);
    reply
}

async fn changes(t: &TestServer, app: &str, changes: Value) -> Reply {
    t.post(&format!("/v1/apps/{app}/listing/changes?wait=true"), MASTER, changes.to_string()).await
}

fn skus(reply: &Reply) -> Vec<u64> {
    reply.json["items"].as_array().unwrap_or_else(|| panic!("{:?}", reply.json)).iter().map(|i| i["sku"].as_u64().unwrap()).collect()
}

async fn server_with_catalog() -> (TestServer, String) {
    let t = TestServer::start();
    let key = t.app_with_key("shop", &["read"]).await;
    let reply = load(&t, "shop", &ten()).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json);
    (t, key)
}

#[tokio::test]
async fn a_bulk_load_is_a_job_with_progress_and_the_catalog_survives_a_restart() {
    let (t, key) = server_with_catalog().await;
    let job = t.post("/v1/apps/shop/listing/catalog?wait=true", MASTER, ndjson(&[sku(11, 11, 500, 1)])).await;
    assert_eq!(job.status, StatusCode::OK, "{:?}", job.json);
    assert_eq!((job.json["kind"].as_str(), job.json["state"].as_str(), job.json["lines"].as_u64(), job.json["applied"].as_u64()), (Some("catalog"), Some("done"), Some(1), Some(1)));
    assert_eq!(job.json["progress"], 1.0);
    let id = job.json["id"].as_str().unwrap().to_owned();
    let again = t.get(&format!("/v1/apps/shop/listing/jobs/{id}"), &key).await;
    assert_eq!(again.json["state"], "done", "{:?}", again.json);
    let unknown = t.get("/v1/apps/shop/listing/jobs/nope", &key).await;
    assert_eq!((unknown.status, unknown.code()), (StatusCode::NOT_FOUND, "unknown_job"));

    let page = t.get("/v1/apps/shop/listing/categories/1?sort=price_asc&size=3", &key).await;
    assert_eq!(page.status, StatusCode::OK, "{:?}", page.json);
    assert_eq!((skus(&page), page.json["total"].as_u64()), (vec![11, 1, 2], Some(11)));
    assert_eq!(page.json["items"][0]["name"], "Item 11", "display data comes from the catalog");
    let categories = t.get("/v1/apps/shop/listing/categories", &key).await;
    assert_eq!(categories.json["skus"], 11);
    let ids: Vec<u64> = categories.json["categories"].as_array().unwrap().iter().map(|c| c["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![1, 10, 11]);
    assert!(categories.json["index_bytes"].as_u64().unwrap() > 0);

    // A restart needs no source: the index is rebuilt from the durable catalog.
    let t = t.restart_with(|_| {});
    let after = t.get("/v1/apps/shop/listing/categories/1?sort=price_asc&size=3", &key).await;
    assert_eq!((skus(&after), after.json["total"].as_u64()), (vec![11, 1, 2], Some(11)), "{:?}", after.json);
    let one = t.get("/v1/apps/shop/listing/skus/11", &key).await;
    assert_eq!((one.json["price"].as_u64(), one.json["name"].as_str(), one.json["category_path"].clone()), (Some(500), Some("Item 11"), json!([1, 11])));
    let missing = t.get("/v1/apps/shop/listing/skus/999", &key).await;
    assert_eq!((missing.status, missing.code()), (StatusCode::NOT_FOUND, "unknown_sku"));
    let missing = t.get("/v1/apps/shop/listing/skus/abc", &key).await;
    assert_eq!((missing.status, missing.code()), (StatusCode::NOT_FOUND, "unknown_sku"));
}

#[tokio::test]
async fn bulk_load_errors_name_their_lines() {
    let t = TestServer::start();
    t.app_with_key("shop", &["read"]).await;
    let body = [
        sku(1, 1, 100, 1).to_string(),
        "{not json".to_owned(),
        json!({"name": "no id", "category_path": [1]}).to_string(),
        json!({"id": "sku-x", "category_path": [1]}).to_string(),
        json!({"sku": 5, "category_path": []}).to_string(),
        json!({"id": "6", "spu": 6, "name": "from skus.jsonl", "image": "", "price": 10, "category_path": [1, 10], "attributes": {"size": "M"}}).to_string(),
    ]
    .join("\n");
    let reply = t.post("/v1/apps/shop/listing/catalog?wait=true", MASTER, body).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json);
    assert_eq!((reply.json["lines"].as_u64(), reply.json["rejected"].as_u64(), reply.json["applied"].as_u64()), (Some(6), Some(4), Some(2)));
    let lines: Vec<(u64, String)> = reply.json["errors"].as_array().unwrap().iter().map(|e| (e["line"].as_u64().unwrap(), e["code"].as_str().unwrap().to_owned())).collect();
    assert_eq!(lines, vec![(2, "invalid_item".into()), (3, "invalid_item".into()), (4, "invalid_item".into()), (5, "invalid_item".into())]);
    assert!(reply.json["errors"][3]["message"].as_str().unwrap().contains("category path"), "{:?}", reply.json["errors"]);

    let none = t.post("/v1/apps/shop/listing/catalog", MASTER, "{\"sku\": 1}\n").await;
    assert_eq!((none.status, none.code()), (StatusCode::BAD_REQUEST, "invalid_item"), "{:?}", none.json);
    assert_eq!(none.json["error"]["details"]["line"], 1);
    let empty = t.post("/v1/apps/shop/listing/catalog", MASTER, "\n\n").await;
    assert_eq!((empty.status, empty.code()), (StatusCode::BAD_REQUEST, "empty_body"));
    let unknown_app = t.post("/v1/apps/nowhere/listing/catalog", MASTER, ndjson(&ten())).await;
    assert_eq!((unknown_app.status, unknown_app.code()), (StatusCode::NOT_FOUND, "unknown_app"));
    let read_only = t.app_with_key("shop", &["read"]).await;
    let refused = t.post("/v1/apps/shop/listing/catalog", &read_only, ndjson(&ten())).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "a bulk load needs admin");
}

#[tokio::test]
async fn a_product_change_is_visible_to_the_next_query_and_durable() {
    let (t, key) = server_with_catalog().await;
    async fn cheapest(t: &TestServer, key: &str) -> Vec<u64> {
        skus(&t.get("/v1/apps/shop/listing/categories/1?sort=price_asc&size=3", key).await)
    }
    assert_eq!(cheapest(&t, &key).await, vec![1, 2, 3]);
    let reply = changes(&t, "shop", json!([{"op": "price", "sku": 9, "price": 1}])).await;
    assert_eq!((reply.status, reply.json["state"].as_str(), reply.json["applied"].as_u64()), (StatusCode::OK, Some("done"), Some(1)), "{:?}", reply.json);
    assert_eq!(cheapest(&t, &key).await, vec![9, 1, 2], "the new price is visible to the next query");

    changes(&t, "shop", json!([{"op": "stock", "sku": 9, "stock": 0}, {"op": "shelf", "sku": 1, "on_shelf": false}])).await;
    let in_stock = t.get("/v1/apps/shop/listing/categories/1?sort=price_asc&size=3&in_stock=true", &key).await;
    assert_eq!(skus(&in_stock), vec![2, 3, 4], "9 has no stock, 1 is off the shelf");
    changes(&t, "shop", json!([{"op": "remove", "sku": 2}, {"op": "upsert", "item": sku(42, 42, 50, 3)}])).await;
    let page = t.get("/v1/apps/shop/listing/categories/1?sort=price_asc&size=3", &key).await;
    assert_eq!((skus(&page), page.json["total"].as_u64()), (vec![9, 42, 3], Some(9)));
    // NDJSON works too, and a change may follow an upsert of the same request.
    let reply = t.post("/v1/apps/shop/listing/changes?wait=true", MASTER, format!("{}\n{}", json!({"op": "upsert", "item": sku(43, 43, 7, 1)}), json!({"op": "price", "sku": 43, "price": 2}))).await;
    assert_eq!(reply.json["applied"], 2, "{:?}", reply.json);
    assert_eq!(skus(&t.get("/v1/apps/shop/listing/categories/11?sort=price_asc&size=2", &key).await), vec![9, 43]);

    let t = t.restart_with(|_| {});
    let page = t.get("/v1/apps/shop/listing/categories/1?sort=price_asc&size=4", &key).await;
    assert_eq!(skus(&page), vec![9, 43, 42, 3], "changes are in the durable catalog");
    assert_eq!(t.get("/v1/apps/shop/listing/skus/9", &key).await.json["stock"], 0);
    assert_eq!(t.get("/v1/apps/shop/listing/skus/2", &key).await.code(), "unknown_sku");
    // Applied once: the processor's position survived the restart with the catalog.
    let changed = t.get("/v1/apps/shop/listing/categories", &key).await;
    assert_eq!(changed.json["changes_applied"], 0, "nothing was re-applied at start: {:?}", changed.json);
}

#[tokio::test]
async fn change_errors_have_stable_codes() {
    let (t, _) = server_with_catalog().await;
    let cases: Vec<(String, StatusCode, &str)> = vec![
        ("[{\"op\": \"price\"".into(), StatusCode::BAD_REQUEST, "invalid_json"),
        ("[]".into(), StatusCode::BAD_REQUEST, "empty_body"),
        (json!([{"op": "paint", "sku": 1}]).to_string(), StatusCode::BAD_REQUEST, "invalid_change"),
        (json!([{"op": "price", "sku": 1, "price": -5}]).to_string(), StatusCode::BAD_REQUEST, "invalid_change"),
        (json!([{"op": "price", "sku": 1, "price": 5, "colour": "red"}]).to_string(), StatusCode::BAD_REQUEST, "invalid_change"),
        (json!([{"op": "price", "sku": 999, "price": 5}]).to_string(), StatusCode::NOT_FOUND, "unknown_sku"),
        (json!([{"op": "upsert", "item": {"sku": 50}}]).to_string(), StatusCode::BAD_REQUEST, "invalid_item"),
    ];
    for (body, status, code) in cases {
        let reply = t.post("/v1/apps/shop/listing/changes", MASTER, body.clone()).await;
        assert_eq!((reply.status, reply.code()), (status, code), "{body}: {:?}", reply.json);
    }
    // A batch with good and bad changes applies the good ones and lists the bad by index.
    let reply = changes(&t, "shop", json!([{"op": "price", "sku": 999, "price": 1}, {"op": "price", "sku": 3, "price": 1}])).await;
    assert_eq!((reply.status, reply.json["applied"].as_u64(), reply.json["rejected"].as_u64()), (StatusCode::OK, Some(1), Some(1)), "{:?}", reply.json);
    assert_eq!((reply.json["errors"][0]["line"].as_u64(), reply.json["errors"][0]["code"].as_str()), (Some(1), Some("unknown_sku")));
    let moved = changes(&t, "shop", json!([{"op": "upsert", "item": {"sku": 77, "category_path": [10, 1]}}])).await;
    assert_eq!((moved.json["refused"].as_u64(), moved.json["errors"][0]["code"].as_str()), (Some(1), Some("invalid_item")), "a path against the tree is refused when applied: {:?}", moved.json);
}

#[tokio::test]
async fn listing_query_errors_have_stable_codes() {
    let (t, key) = server_with_catalog().await;
    let first = t.get("/v1/apps/shop/listing/categories/1?size=2", &key).await;
    let cursor = first.json["next_cursor"].as_str().unwrap().to_owned();
    let cases: Vec<(String, StatusCode, &str)> = vec![
        ("/v1/apps/shop/listing/categories/999".into(), StatusCode::NOT_FOUND, "unknown_category"),
        ("/v1/apps/shop/listing/categories/shoes".into(), StatusCode::NOT_FOUND, "unknown_category"),
        ("/v1/apps/shop/listing/categories/1?attr.material=wool".into(), StatusCode::BAD_REQUEST, "unknown_attribute"),
        ("/v1/apps/shop/listing/categories/1?sort=cheapest".into(), StatusCode::BAD_REQUEST, "unknown_sort"),
        ("/v1/apps/shop/listing/categories/1?page=0".into(), StatusCode::BAD_REQUEST, "page_out_of_range"),
        ("/v1/apps/shop/listing/categories/1?page=99&size=5".into(), StatusCode::BAD_REQUEST, "page_out_of_range"),
        ("/v1/apps/shop/listing/categories/1?page=600&size=20".into(), StatusCode::BAD_REQUEST, "page_out_of_range"),
        ("/v1/apps/shop/listing/categories/1?size=0".into(), StatusCode::BAD_REQUEST, "invalid_page_size"),
        ("/v1/apps/shop/listing/categories/1?size=100000".into(), StatusCode::BAD_REQUEST, "invalid_page_size"),
        ("/v1/apps/shop/listing/categories/1?cursor=garbage".into(), StatusCode::BAD_REQUEST, "bad_cursor"),
        (format!("/v1/apps/shop/listing/categories/1?size=2&sort=sales&cursor={cursor}"), StatusCode::BAD_REQUEST, "bad_cursor"),
        (format!("/v1/apps/shop/listing/categories/1?size=2&page=2&cursor={cursor}"), StatusCode::BAD_REQUEST, "invalid_paging"),
        ("/v1/apps/shop/listing/categories/1?colour=red".into(), StatusCode::BAD_REQUEST, "unknown_parameter"),
        ("/v1/apps/shop/listing/categories/1?brand=acme".into(), StatusCode::BAD_REQUEST, "invalid_parameter"),
        ("/v1/apps/shop/listing/categories/1?price_min=cheap".into(), StatusCode::BAD_REQUEST, "invalid_parameter"),
        ("/v1/apps/shop/listing/categories/1?in_stock=maybe".into(), StatusCode::BAD_REQUEST, "invalid_parameter"),
        ("/v1/apps/shop/listing/categories/1?price_min=500&price_max=100".into(), StatusCode::BAD_REQUEST, "invalid_price_range"),
    ];
    for (uri, status, code) in cases {
        let reply = t.get(&uri, &key).await;
        assert_eq!((reply.status, reply.code()), (status, code), "{uri}: {:?}", reply.json);
        assert!(!reply.json["error"]["message"].as_str().unwrap_or("").is_empty(), "{uri}: a message says what is wrong");
    }
    let other = t.get("/v1/apps/other/listing/categories/1", MASTER).await;
    assert_eq!((other.status, other.code()), (StatusCode::NOT_FOUND, "unknown_category"), "an app without a catalog knows no category");
    let writer = t.app_with_key("shop", &["write"]).await;
    assert_eq!(t.get("/v1/apps/shop/listing/categories/1", &writer).await.status, StatusCode::FORBIDDEN, "listing needs the read scope");
    assert_eq!(t.get("/v1/apps/shop/listing/categories/1", "wrong").await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn filters_sorts_facets_and_cursors() {
    let (t, key) = server_with_catalog().await;
    let get = |uri: String| {
        let key = key.clone();
        let t = &t;
        async move { t.get(&uri, &key).await }
    };
    let base = "/v1/apps/shop/listing/categories";
    assert_eq!(skus(&get(format!("{base}/1?sort=price_desc&size=3")).await), vec![10, 9, 8]);
    assert_eq!(skus(&get(format!("{base}/1?sort=sales&size=2")).await), vec![10, 9]);
    assert_eq!(skus(&get(format!("{base}/1?sort=newest&size=2")).await), vec![10, 9]);
    assert_eq!(skus(&get(format!("{base}/1?sort=reviews&size=2")).await), vec![10, 9]);
    assert_eq!(skus(&get(format!("{base}/1?size=2")).await), vec![10, 9], "quality by default");
    assert_eq!(skus(&get(format!("{base}/10?sort=price_asc")).await), vec![2, 4, 6, 8, 10], "a sub-category");
    assert_eq!(skus(&get(format!("{base}/1?sort=price_asc&brand=100")).await), vec![3, 6, 9]);
    assert_eq!(skus(&get(format!("{base}/1?sort=price_asc&brand=100&brand=101")).await), vec![1, 3, 4, 6, 7, 9, 10]);
    assert_eq!(skus(&get(format!("{base}/1?sort=price_asc&shop=201&price_min=3000&price_max=7000")).await), vec![3, 5, 7]);
    assert_eq!(skus(&get(format!("{base}/1?sort=price_asc&attr.color=red&price_max=6000")).await), vec![2, 4, 6]);
    let faceted = get(format!("{base}/1?facets=true&attr.color=red")).await;
    let brands: u64 = faceted.json["facets"]["brands"].as_array().unwrap().iter().map(|b| b["count"].as_u64().unwrap()).sum();
    assert_eq!((faceted.json["total"].as_u64(), brands), (Some(5), 5), "{:?}", faceted.json["facets"]);
    let colors = &faceted.json["facets"]["attributes"][0];
    assert_eq!((colors["key"].as_str(), colors["values"].as_array().unwrap().len()), (Some("color"), 2), "disjunctive: both colours counted");
    assert!(get(format!("{base}/1")).await.json.get("facets").is_none(), "facets only on request");
    // Cursor paging gives exactly page-number paging's items.
    let page1 = get(format!("{base}/1?sort=price_asc&size=4")).await;
    let cursor = page1.json["next_cursor"].as_str().unwrap().to_owned();
    let by_cursor = get(format!("{base}/1?sort=price_asc&size=4&cursor={cursor}")).await;
    let page2 = get(format!("{base}/1?sort=price_asc&size=4&page=2")).await;
    assert_eq!((skus(&by_cursor), skus(&page2)), (vec![5, 6, 7, 8], vec![5, 6, 7, 8]));
    let last = get(format!("{base}/1?sort=price_asc&size=4&page=3")).await;
    assert!(last.json.get("next_cursor").is_none() && last.json["last_page"] == 3);
    // SPU de-duplication: two SKUs of one SPU list once, totals count SPUs.
    load(&t, "shop", &[sku(21, 5, 4900, 2)]).await;
    let deduped = get(format!("{base}/1?sort=price_asc&size=10")).await;
    assert_eq!(deduped.json["total"], 10, "SKU 21 shares SPU 5");
    assert!(skus(&deduped).contains(&21) && !skus(&deduped).contains(&5), "the SPU's best SKU for the sort: {:?}", skus(&deduped));
}

#[tokio::test]
async fn history_reads_the_listing_catalog() {
    let t = TestServer::start();
    let key = t.app_with_key("shop", &["write", "read"]).await;
    let view = |id: &str, sku: u64, time: i64| json!({"id": id, "user": "ann", "action": "view", "target": {"type": "sku", "id": sku.to_string()}, "time": time});
    let base = now_ms() - 60_000;
    let reply = t.post("/v1/events", &key, json!([view("v1", 3, base), view("v2", 4, base + 1000)]).to_string()).await;
    assert_eq!(reply.json["rejected"], 0, "{:?}", reply.json);
    assert!(t.server.runtime().wait_caught_up(Duration::from_secs(10)));
    let before = t.get("/v1/apps/shop/users/ann/history", &key).await;
    assert_eq!(before.json["items"][0]["name"], "", "no catalog yet: the pass-through one: {:?}", before.json);
    load(&t, "shop", &ten()).await;
    let after = t.get("/v1/apps/shop/users/ann/history", &key).await;
    let names: Vec<&str> = after.json["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["Item 4", "Item 3"], "history names SKUs from the listing's catalog: {:?}", after.json);
    assert_eq!(after.json["items"][0]["image"], "/img/4.jpg");
    // Another app keeps its own (here: none).
    let other = t.app_with_key("blog", &["write", "read"]).await;
    t.post("/v1/events", &other, json!([view("b1", 3, base)]).to_string()).await;
    assert!(t.server.runtime().wait_caught_up(Duration::from_secs(10)));
    assert_eq!(t.get("/v1/apps/blog/users/ann/history", &other).await.json["items"][0]["name"], "");
}

async fn shop_page(t: &TestServer, uri: &str) -> (StatusCode, String, String) {
    let reply = t.page(None, uri, &[]).await;
    let from = reply.headers.get("x-meridian-page").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (reply.status, from, reply.body)
}

#[tokio::test]
async fn shopper_pages_are_cached_and_fall_back_twice_never_failing() {
    let (t, _) = server_with_catalog().await;
    changes(&t, "shop", json!([{"op": "upsert", "item": {"sku": 12, "spu": 12, "name": "<script>alert(1)</script>", "category_path": [1, 10], "price": 99999, "quality": 0.5}}])).await;
    let (status, from, body) = shop_page(&t, "/shop/shop/categories/1").await;
    assert_eq!((status, from.as_str()), (StatusCode::OK, "rendered"));
    assert!(body.contains("Item 10") && body.contains("¥10.00") && body.contains("11</span> products"), "{body}");
    assert_eq!(shop_page(&t, "/shop/shop/categories/1").await.1, "cached");
    let (_, from, page_two) = shop_page(&t, "/shop/shop/categories/1?page=2&size=2").await;
    assert_eq!(from, "rendered");
    assert!(page_two.contains("Item 8") && page_two.contains("rel=\"prev\""), "{page_two}");
    let (_, _, last) = shop_page(&t, "/shop/shop/categories/1?page=6&size=2").await;
    assert!(last.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !last.contains("<script>alert(1)"), "names are escaped: {last}");

    // Client errors are pages too, never 5xx.
    assert_eq!(shop_page(&t, "/shop/shop/categories/999").await.0, StatusCode::NOT_FOUND);
    assert_eq!(shop_page(&t, "/shop/shop/categories/1?sort=nope").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(shop_page(&t, "/shop/shop/categories/1?page=99").await.0, StatusCode::BAD_REQUEST);

    // Inject a backend failure: cached pages still serve; an uncached page falls back to
    // the category's first page; a category without a cached page gets the static page.
    let set = t.request(Method::PUT, "/v1/apps/shop/listing/backend-failure", &[("authorization", &format!("Bearer {MASTER}")), ("content-type", "application/json")], json!({"fail": true}).to_string()).await;
    assert_eq!(set.status, StatusCode::OK, "{:?}", set.json);
    assert_eq!(shop_page(&t, "/shop/shop/categories/1?page=2&size=2").await.1, "cached");
    let (status, from, body) = shop_page(&t, "/shop/shop/categories/1?page=3&size=2").await;
    assert_eq!((status, from.as_str()), (StatusCode::OK, "first_page_fallback"));
    assert!(body.contains("Item 10"), "the first page: {body}");
    let (status, from, body) = shop_page(&t, "/shop/shop/categories/11").await;
    assert_eq!((status, from.as_str()), (StatusCode::OK, "static_fallback"));
    assert!(body.contains("busy"), "{body}");
    let set = t.request(Method::PUT, "/v1/apps/shop/listing/backend-failure", &[("authorization", &format!("Bearer {MASTER}")), ("content-type", "application/json")], json!({"fail": false}).to_string()).await;
    assert_eq!(set.json["fail"], false);
    assert_eq!(shop_page(&t, "/shop/shop/categories/11").await.1, "rendered", "back to normal");
    let bad = t.request(Method::PUT, "/v1/apps/shop/listing/backend-failure", &[("authorization", &format!("Bearer {MASTER}")), ("content-type", "application/json")], "{\"fail\": \"yes\"}").await;
    assert_eq!((bad.status, bad.code()), (StatusCode::BAD_REQUEST, "invalid_json"));
    let nowhere = t.request(Method::PUT, "/v1/apps/nowhere/listing/backend-failure", &[("authorization", &format!("Bearer {MASTER}")), ("content-type", "application/json")], json!({"fail": true}).to_string()).await;
    assert_eq!((nowhere.status, nowhere.code()), (StatusCode::NOT_FOUND, "unknown_app"));

    // Price and stock load live: a change shows there before the cached page expires.
    changes(&t, "shop", json!([{"op": "price", "sku": 10, "price": 123}])).await;
    let prices = t.get("/shop/shop/prices?skus=10,3,999", "").await;
    assert_eq!(prices.json["items"], json!([{"sku": 10, "price": 123, "stock": 5, "on_shelf": true}, {"sku": 3, "price": 3000, "stock": 5, "on_shelf": true}]));
    let bad = t.get("/shop/shop/prices?skus=ten", "").await;
    assert_eq!((bad.status, bad.code()), (StatusCode::BAD_REQUEST, "invalid_parameter"));
}

#[tokio::test]
async fn the_config_can_inject_a_backend_failure_from_the_start() {
    let t = TestServer::start_with(|c| c.listing.fail_backend = true);
    t.app_with_key("shop", &["read"]).await;
    load(&t, "shop", &ten()).await;
    let (status, from, _) = shop_page(&t, "/shop/shop/categories/1").await;
    assert_eq!((status, from.as_str()), (StatusCode::OK, "static_fallback"), "nothing cached yet: the static page, not a 5xx");
    let (status, from, _) = shop_page(&t, "/shop/nowhere/categories/1").await;
    assert_eq!((status, from.as_str()), (StatusCode::OK, "static_fallback"));
}

#[tokio::test]
async fn the_template_is_validated_saved_audited_and_used() {
    let (t, key) = server_with_catalog().await;
    let put = |body: Value| {
        let t = &t;
        async move { t.request(Method::PUT, "/v1/apps/shop/listing/template", &[("authorization", &format!("Bearer {MASTER}")), ("content-type", "application/json")], body.to_string()).await }
    };
    let builtin = t.get("/v1/apps/shop/listing/template", &key).await;
    assert_eq!(builtin.json["builtin"], true);
    assert!(builtin.json["template"].as_str().unwrap().contains("{% for item in items %}"));
    assert_eq!(shop_page(&t, "/shop/shop/categories/1").await.1, "rendered");

    let broken = put(json!({"template": "<ul>\n{% for item in items %}<li>{{ item.name }}</li>\n"})).await;
    assert_eq!((broken.status, broken.code()), (StatusCode::BAD_REQUEST, "invalid_template"), "{:?}", broken.json);
    assert!(broken.json["error"]["details"]["line"].as_u64().is_some(), "{:?}", broken.json);
    let failing = put(json!({"template": "{{ items | nosuchfilter }}"})).await;
    assert_eq!(failing.code(), "invalid_template", "{:?}", failing.json);
    assert_eq!(put(json!({"nope": 1})).await.code(), "invalid_json");

    let saved = put(json!({"template": "<h1>Custom {{ category }}</h1>{% for item in items %}<p class=x>{{ item.name }}</p>{% endfor %}"})).await;
    assert_eq!((saved.status, saved.json["builtin"].as_bool()), (StatusCode::OK, Some(false)), "{:?}", saved.json);
    let (_, from, body) = shop_page(&t, "/shop/shop/categories/1").await;
    assert_eq!(from, "rendered", "pages of the old template are dropped");
    assert!(body.starts_with("<h1>Custom 1</h1>") && body.contains("<p class=x>Item 10</p>"), "{body}");
    let audit = t.get("/v1/audit?action=listing.template_update", MASTER).await;
    assert_eq!(audit.json["entries"][0]["after"]["builtin"], false, "{:?}", audit.json);
    let reset = put(json!({"template": ""})).await;
    assert_eq!(reset.json["builtin"], true);
    assert!(shop_page(&t, "/shop/shop/categories/1").await.2.contains("<!doctype html>"));
}

#[tokio::test]
async fn quality_scores_come_from_the_behaviour_in_the_log() {
    // Without the live lift, so that listed scores are the job's.
    let t = TestServer::start_with(|c| c.listing.live_adjustment = false);
    let key = t.app_with_key("shop", &["write", "read"]).await;
    // Two SKUs alike but for their behaviour; quality starts equal (0).
    let alike = |id: u64| json!({"sku": id, "name": format!("S{id}"), "category_path": [5], "price": 1000, "stock": 3, "launch_time": 1_700_000_000_000i64});
    load(&t, "shop", &[alike(1), alike(2)]).await;
    let base = now_ms() - 60_000;
    let event = |id: String, action: &str, sku: u64| json!({"id": id, "user": "u", "action": action, "target": {"type": "sku", "id": sku.to_string()}, "time": base});
    let mut events: Vec<Value> = (0..20).map(|i| event(format!("v{i}"), "view", 2)).collect();
    events.extend((0..5).map(|i| event(format!("o{i}"), "order", 2)));
    events.push(event("c1".into(), "cart", 2));
    events.push(event("v-one".into(), "view", 1));
    let reply = t.post("/v1/events", &key, json!(events).to_string()).await;
    assert_eq!(reply.json["rejected"], 0, "{:?}", reply.json);
    assert!(t.server.runtime().wait_caught_up(Duration::from_secs(10)));
    assert_eq!(skus(&t.get("/v1/apps/shop/listing/categories/5", &key).await), vec![1, 2], "no score moved before the job (ties by SPU)");
    let run = t.post("/v1/apps/shop/listing/quality/run", MASTER, "").await;
    assert_eq!(run.status, StatusCode::OK, "{:?}", run.json);
    assert_eq!((run.json["scored"].as_u64(), run.json["changed"].as_u64(), run.json["with_behaviour"].as_u64()), (Some(2), Some(2), Some(2)));
    let page = t.get("/v1/apps/shop/listing/categories/5", &key).await;
    assert_eq!(skus(&page), vec![2, 1], "views and orders lift SKU 2: {:?}", page.json);
    let (q2, q1) = (page.json["items"][0]["quality"].as_f64().unwrap(), page.json["items"][1]["quality"].as_f64().unwrap());
    assert!(q2 > q1 && q1 > 0.0, "{q2} {q1}");
    let stored = t.get("/v1/apps/shop/listing/skus/2", &key).await;
    assert_eq!(stored.json["quality"].as_f64().map(|q| q as f32), Some(q2 as f32), "the score is in the durable catalog");
    let again = t.post("/v1/apps/shop/listing/quality/run", MASTER, "").await;
    assert_eq!(again.json["changed"], 0, "nothing moved since: {:?}", again.json);
    let nowhere = t.post("/v1/apps/nowhere/listing/quality/run", MASTER, "").await;
    assert_eq!((nowhere.status, nowhere.code()), (StatusCode::NOT_FOUND, "unknown_app"));
}

#[tokio::test]
async fn the_console_page_lists_categories_runs_a_query_edits_merchandising_and_the_template() {
    let (t, _) = server_with_catalog().await;
    let created = t.post("/v1/operators", MASTER, json!({"login": "ops", "password": "correct horse battery staple", "grants": [{"app": "shop", "role": "admin"}]}).to_string()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.json);
    let session = t.login("ops", "correct horse battery staple").await;
    let page = t.page(Some(&session), "/console/apps/shop/listing", &[]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("id=\"listing-categories\"") && page.body.contains("/shop/shop/categories/10"), "{}", page.body);
    assert!(page.body.contains("id=\"tryout-items\"") && page.body.contains("Item 10"), "the tryout lists the top category by default");
    assert!(page.body.contains("id=\"template-text\""));
    let tried = t.page(Some(&session), "/console/apps/shop/listing?category=10&sort=price_asc", &[]).await;
    assert!(tried.body.contains("5 products"), "{}", tried.body);
    assert!(tried.body.contains("id=\"load-form\"") && tried.body.contains("id=\"load-progress\""), "an admin can load a catalog with a progress bar");
    // The tried category's merchandising, as set through the API.
    let set = t.as_session(&session, Method::PUT, "/v1/apps/shop/listing/categories/10/settings", json!({"max_brand_run": 2, "pins": [{"position": 1, "sku": 4}]}).to_string(), &[]).await;
    assert_eq!(set.status, StatusCode::OK, "{:?}", set.json);
    let tried = t.page(Some(&session), "/console/apps/shop/listing?category=10&sort=price_asc", &[]).await;
    assert!(tried.body.contains("id=\"settings-form\" data-category=\"10\""), "{}", tried.body);
    assert!(tried.body.contains("id=\"settings-brand-run\" name=\"max_brand_run\" type=\"number\" min=\"1\" value=\"2\""), "{}", tried.body);
    assert!(tried.body.contains(">1: 4\n</textarea>"), "the pin is shown as position: SKU");
    let failed = t.page(Some(&session), "/console/apps/shop/listing?category=10&sort=bogus", &[]).await;
    assert!(failed.body.contains("unknown_sort"), "the tryout shows the API's error code");
    let saved = t.as_session(&session, Method::PUT, "/v1/apps/shop/listing/template", json!({"template": "<p>{{ total }}</p>"}).to_string(), &[]).await;
    assert_eq!(saved.status, StatusCode::OK, "{:?}", saved.json);
    assert!(t.page(Some(&session), "/console/apps/shop/listing", &[]).await.body.contains("&lt;p&gt;{{ total }}&lt;/p&gt;"));
}

async fn skus_now(t: &TestServer, key: &str) -> u64 {
    t.get("/v1/apps/shop/listing/categories", key).await.json["skus"].as_u64().unwrap_or(0)
}

async fn wait_for_skus(t: &TestServer, key: &str, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while skus_now(t, key).await < n {
        assert!(std::time::Instant::now() < deadline, "the file was not loaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Each phase runs on a runtime of its own: dropping it stops the server's background
/// tasks (which hold its stores) before the next phase reopens the data directory.
#[test]
fn a_catalog_file_is_loaded_at_start_once_per_version() {
    let runtime = || tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let first = runtime();
    let (t, key, file) = first.block_on(async {
        let t = TestServer::start();
        let key = t.app_with_key("shop", &["read"]).await;
        let file = t.dir().join("skus.jsonl");
        std::fs::write(&file, ndjson(&ten())).unwrap();
        let path = file.clone();
        let t = t.restart_with(move |c| {
            c.listing.load_file = Some(path);
            c.listing.load_app = Some("shop".into());
        });
        t.server.spawn_background_tasks();
        wait_for_skus(&t, &key, 10).await;
        // The loader remembers the file after publishing it; give it that moment.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(changes(&t, "shop", json!([{"op": "price", "sku": 3, "price": 1}])).await.json["applied"], 1);
        (t, key, file)
    });
    drop(first);
    // The same file is not loaded again; a changed one is.
    let second = runtime();
    let t = second.block_on(async {
        let t = t.restart_with(|_| {});
        t.server.spawn_background_tasks();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(t.server.runtime().wait_caught_up(Duration::from_secs(10)));
        assert_eq!(t.get("/v1/apps/shop/listing/skus/3", &key).await.json["price"], 1, "an unchanged file is not loaded again over later changes");
        std::fs::write(&file, ndjson(&[ten(), vec![sku(11, 11, 1, 1)]].concat())).unwrap();
        t
    });
    drop(second);
    let third = runtime();
    third.block_on(async {
        let t = t.restart_with(|_| {});
        t.server.spawn_background_tasks();
        wait_for_skus(&t, &key, 11).await;
        assert!(t.server.runtime().wait_caught_up(Duration::from_secs(10)));
        assert_eq!(t.get("/v1/apps/shop/listing/skus/3", &key).await.json["price"], 3000, "the changed file was loaded whole");
    });
    let mut bad = meridian_server::Config::default();
    bad.listing.load_file = Some(file);
    let err = format!("{:#}", bad.validate().unwrap_err());
    assert!(err.contains("listing.load_app"), "{err}");
}

#[tokio::test]
async fn a_replay_of_the_product_topic_ends_where_the_catalog_is() {
    let (t, key) = server_with_catalog().await;
    changes(&t, "shop", json!([{"op": "price", "sku": 4, "price": 1}, {"op": "remove", "sku": 5}, {"op": "upsert", "item": sku(30, 30, 2, 0)}, {"op": "shelf", "sku": 6, "on_shelf": false}])).await;
    changes(&t, "shop", json!([{"op": "price", "sku": 4, "price": 3}])).await;
    let before = t.get("/v1/apps/shop/listing/categories/1?sort=price_asc&size=20", &key).await;
    let applied = t.get("/v1/apps/shop/listing/categories", &key).await.json["changes_applied"].as_u64().unwrap();
    let rebuilt = t.post("/v1/admin/processors/listing/rebuild", MASTER, "").await;
    assert!(rebuilt.status.is_success(), "{:?}", rebuilt.json);
    // The ten loaded SKUs and the five changes are applied again, in log order, onto the
    // catalog as it is (a rebuild does not clear it: see ProductsProcessor::clear_state).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while t.get("/v1/apps/shop/listing/categories", &key).await.json["changes_applied"].as_u64().unwrap() < applied + 15 {
        assert!(std::time::Instant::now() < deadline, "the topic was not replayed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(t.server.runtime().wait_caught_up(Duration::from_secs(10)));
    let after = t.get("/v1/apps/shop/listing/categories/1?sort=price_asc&size=20", &key).await;
    assert_eq!((skus(&after), after.json["total"].clone()), (skus(&before), before.json["total"].clone()), "every change applied again, in log order");
    assert_eq!(t.get("/v1/apps/shop/listing/skus/4", &key).await.json["price"], 3);
    assert_eq!(t.get("/v1/apps/shop/listing/skus/5", &key).await.code(), "unknown_sku");
}

#[tokio::test]
async fn recent_behaviour_lifts_scores_live_without_touching_the_catalog() {
    let t = TestServer::start();
    let key = t.app_with_key("shop", &["write", "read"]).await;
    let alike = |id: u64| json!({"sku": id, "name": format!("S{id}"), "category_path": [5], "price": 1000, "stock": 3, "quality": 10.0});
    load(&t, "shop", &[alike(1), alike(2)]).await;
    assert_eq!(skus(&t.get("/v1/apps/shop/listing/categories/5", &key).await), vec![1, 2]);
    let now = now_ms();
    let events: Vec<Value> = (0..5).map(|i| json!({"id": format!("c{i}"), "user": "u", "action": "cart", "target": {"type": "sku", "id": "2"}, "time": now - 1000})).collect();
    assert_eq!(t.post("/v1/events", &key, json!(events).to_string()).await.json["rejected"], 0);
    assert!(t.server.runtime().wait_caught_up(Duration::from_secs(10)));
    let page = t.get("/v1/apps/shop/listing/categories/5", &key).await;
    assert_eq!(skus(&page), vec![2, 1], "five recent carts lift SKU 2: {:?}", page.json);
    let lifted = page.json["items"][0]["quality"].as_f64().unwrap();
    assert!(lifted > 10.0 && lifted <= 20.0, "lifted by at most live.max_boost: {lifted}");
    assert_eq!(t.get("/v1/apps/shop/listing/skus/2", &key).await.json["quality"], 10.0, "the catalog keeps the batch score");
    // A new batch score keeps the lift.
    changes(&t, "shop", json!([{"op": "quality", "sku": 2, "score": 9.0}])).await;
    let page = t.get("/v1/apps/shop/listing/categories/5", &key).await;
    assert_eq!(skus(&page), vec![2, 1], "{:?}", page.json);
    assert!(page.json["items"][0]["quality"].as_f64().unwrap() > 9.0);
    // Old behaviour (a replayed backfill) lifts nothing: it has decayed.
    let old: Vec<Value> = (0..5).map(|i| json!({"id": format!("o{i}"), "user": "u", "action": "order", "target": {"type": "sku", "id": "1"}, "time": now - 3 * 86_400_000})).collect();
    assert_eq!(t.post("/v1/events", &key, json!(old).to_string()).await.json["rejected"], 0);
    assert!(t.server.runtime().wait_caught_up(Duration::from_secs(10)));
    assert_eq!(t.get("/v1/apps/shop/listing/categories/5", &key).await.json["items"][1]["quality"], 10.0);
}

#[tokio::test]
async fn category_settings_interleave_brands_pin_skus_and_survive_a_restart() {
    let (t, key) = server_with_catalog().await;
    let put = |body: Value, category: u32| {
        let t = &t;
        async move { t.request(Method::PUT, &format!("/v1/apps/shop/listing/categories/{category}/settings"), &[("authorization", &format!("Bearer {MASTER}")), ("content-type", "application/json")], body.to_string()).await }
    };
    // Price order: 1..=10, brands 100 + id % 3: 101, 102, 100, 101, 102, 100…; shops 201, 200….
    assert_eq!(skus(&t.get("/v1/apps/shop/listing/categories/1?sort=price_asc&size=4", &key).await), vec![1, 2, 3, 4]);
    let set = put(json!({"max_shop_run": 1, "pins": [{"position": 0, "sku": 9}]}), 1).await;
    assert_eq!(set.status, StatusCode::OK, "{:?}", set.json);
    let page = t.get("/v1/apps/shop/listing/categories/1?sort=price_asc&size=4", &key).await;
    assert_eq!(skus(&page), vec![9, 2, 1, 4], "9 pinned first; then shops alternate: {:?}", page.json);
    assert_eq!(page.json["items"][0]["pinned"], true);
    assert_eq!(t.get("/v1/apps/shop/listing/categories/1/settings", &key).await.json["pins"], json!([{"position": 0, "sku": 9}]));
    assert_eq!(t.get("/v1/apps/shop/listing/categories/10/settings", &key).await.json, json!({"max_brand_run": null, "max_shop_run": null, "window": 32, "pins": []}), "not inherited");
    let cases: Vec<(Value, u32, StatusCode, &str)> = vec![
        (json!({"max_brand_run": 0}), 1, StatusCode::BAD_REQUEST, "invalid_settings"),
        (json!({"window": 1000}), 1, StatusCode::BAD_REQUEST, "invalid_settings"),
        (json!({"pins": [{"position": 1, "sku": 1}, {"position": 1, "sku": 2}]}), 1, StatusCode::BAD_REQUEST, "invalid_settings"),
        (json!({"pins": [{"position": 0, "sku": 999}]}), 1, StatusCode::NOT_FOUND, "unknown_sku"),
        (json!({"max_run": 1}), 1, StatusCode::BAD_REQUEST, "invalid_json"),
        (json!({}), 999, StatusCode::NOT_FOUND, "unknown_category"),
    ];
    for (body, category, status, code) in cases {
        let reply = put(body.clone(), category).await;
        assert_eq!((reply.status, reply.code()), (status, code), "{body}: {:?}", reply.json);
    }
    let t = t.restart_with(|_| {});
    assert_eq!(skus(&t.get("/v1/apps/shop/listing/categories/1?sort=price_asc&size=4", &key).await), vec![9, 2, 1, 4], "the settings are durable");
}

#[tokio::test]
async fn pending_changes_of_a_category_that_stopped_changing_are_merged_by_the_quiet_task() {
    let t = TestServer::start_with(|c| c.listing.merge_quiet_secs = 1);
    t.server.spawn_background_tasks();
    let key = t.app_with_key("shop", &["read"]).await;
    load(&t, "shop", &ten()).await;
    let pending = |reply: &Reply, id: u64| reply.json["categories"].as_array().and_then(|all| all.iter().find(|c| c["id"] == id)).and_then(|c| c["delta_entries"].as_u64());
    let reply = changes(&t, "shop", json!([{"op": "price", "sku": 9, "price": 1}])).await;
    assert!(reply.status.is_success(), "{:?}", reply.json);
    let categories = t.get("/v1/apps/shop/listing/categories", &key).await;
    assert_eq!(pending(&categories, 11), Some(1), "{:?}", categories.json);
    // One change is far below the merge threshold: pending until the category is quiet
    // for a run of the task (1 s here), then merged — and still what queries answer.
    let mut merged = false;
    for _ in 0..100 {
        let categories = t.get("/v1/apps/shop/listing/categories", &key).await;
        if pending(&categories, 11) == Some(0) && pending(&categories, 1) == Some(0) {
            merged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(merged, "the pending change was not merged within 5 s");
    let page = t.get("/v1/apps/shop/listing/categories/11?sort=price_asc&size=1", &key).await;
    assert_eq!((skus(&page), page.json["items"][0]["price"].as_u64()), (vec![9], Some(1)));
}
