//! Segment's tracking API messages (`track`, `page`, `screen`, `identify`, `group`,
//! `alias`) mapped to Meridian's canonical event object, so Segment client libraries can
//! send to Meridian unchanged.
//!
//! | Segment | Meridian |
//! |---|---|
//! | `messageId` | `id` |
//! | `userId` / `anonymousId` | `user` / `device` |
//! | `timestamp` (else `originalTimestamp`, `sentAt`) | `time` |
//! | `track` + `event` | `action` = event name in snake_case (`Order Completed` → `order_completed`) |
//! | `page` / `screen` / `identify` / `group` / `alias` | `action` = the type |
//! | `properties` (`traits` for identify/group) | `props` (plus `name` for pages, `event` for tracks) |
//! | `properties.sku` / `properties.product_id` | `target` = `{type: sku, id}` |
//! | `context.page.path`, `context.campaign.source` or `context.page.referrer`, `context.ip`, `context.userAgent`, `context.app.version`, `context.os.name`, `context.campaign.medium` | `context.page`, `source`, `ip`, `user_agent`, `version`, `platform`, `channel` |

use serde_json::{json, Map, Value};

/// Segment message types Meridian accepts.
pub const MESSAGE_TYPES: [&str; 6] = ["track", "page", "screen", "identify", "group", "alias"];

/// `Order Completed` → `order_completed`: lowercase, runs of other characters become `_`.
pub fn action_from_event_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending_sep = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if pending_sep && !out.is_empty() {
                out.push('_');
            }
            pending_sep = false;
            out.push(c.to_ascii_lowercase());
        } else {
            pending_sep = true;
        }
    }
    out.truncate(64);
    out
}

fn get_str<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str().filter(|s| !s.is_empty())
}

/// Maps one Segment message to a canonical event object. `message_type` overrides the
/// message's own `type` (the single-message routes imply it). Errors are returned as the
/// canonical validation will find them: a message with an unknown type maps to an event
/// without an action.
pub fn to_canonical(mut message: Value, message_type: Option<&str>) -> Value {
    let Some(obj) = message.as_object_mut() else { return message };
    let kind = message_type.map(str::to_owned).or_else(|| obj.get("type").and_then(Value::as_str).map(str::to_owned)).unwrap_or_default();
    let mut out = Map::new();
    if let Some(id) = obj.remove("messageId") {
        out.insert("id".into(), id);
    }
    if let Some(user) = obj.remove("userId").filter(|v| !v.is_null()) {
        out.insert("user".into(), user);
    }
    if let Some(device) = obj.remove("anonymousId").filter(|v| !v.is_null()) {
        out.insert("device".into(), device);
    }
    let time = obj.remove("timestamp").or_else(|| obj.remove("originalTimestamp")).or_else(|| obj.remove("sentAt"));
    if let Some(time) = time.filter(|v| !v.is_null()) {
        out.insert("time".into(), time);
    }
    let mut props = match obj.remove(if kind == "identify" || kind == "group" { "traits" } else { "properties" }) {
        Some(Value::Object(p)) => p,
        Some(other) if !other.is_null() => {
            // Keep the wrong type visible to validation rather than dropping it.
            out.insert("props".into(), other);
            Map::new()
        }
        _ => Map::new(),
    };
    let action = match kind.as_str() {
        "track" => {
            let name = obj.get("event").and_then(Value::as_str).unwrap_or_default().to_owned();
            props.insert("event".into(), Value::String(name.clone()));
            Value::String(action_from_event_name(&name))
        }
        "page" | "screen" => {
            if let Some(name) = obj.get("name").and_then(Value::as_str) {
                props.insert("name".into(), Value::String(name.to_owned()));
            }
            Value::String(kind.clone())
        }
        "identify" | "group" | "alias" => {
            if let Some(group) = obj.get("groupId") {
                props.insert("group_id".into(), group.clone());
            }
            if let Some(previous) = obj.get("previousId") {
                props.insert("previous_id".into(), previous.clone());
            }
            Value::String(kind.clone())
        }
        _ => Value::Null,
    };
    if !action.is_null() {
        out.insert("action".into(), action);
    }
    let target_id = props.get("sku").or_else(|| props.get("product_id")).filter(|v| v.is_string() || v.is_number()).cloned();
    if let Some(id) = target_id {
        out.insert("target".into(), json!({"type": "sku", "id": id}));
    }
    let context = obj.get("context").cloned().unwrap_or(Value::Null);
    let mut ctx = Map::new();
    let mut put = |name: &str, value: Option<&str>| {
        if let Some(v) = value {
            ctx.insert(name.into(), Value::String(v.chars().take(1024).collect()));
        }
    };
    put("page", get_str(&context, &["page", "path"]).or_else(|| if kind == "page" || kind == "screen" { obj.get("name").and_then(Value::as_str) } else { None }));
    put("source", get_str(&context, &["campaign", "source"]).or_else(|| get_str(&context, &["page", "referrer"])));
    put("channel", get_str(&context, &["campaign", "medium"]));
    put("ip", get_str(&context, &["ip"]));
    put("user_agent", get_str(&context, &["userAgent"]));
    if let Some(os) = get_str(&context, &["os", "name"]) {
        ctx.insert("platform".into(), Value::String(os.to_ascii_lowercase().chars().take(64).collect()));
    } else if let Some(library) = get_str(&context, &["library", "name"]) {
        ctx.insert("platform".into(), Value::String(library.chars().take(64).collect()));
    }
    if let Some(version) = get_str(&context, &["app", "version"]) {
        if meridian_event::is_semver_like(version) {
            ctx.insert("version".into(), Value::String(version.to_owned()));
        } else {
            props.insert("app_version".into(), Value::String(version.to_owned()));
        }
    }
    if !ctx.is_empty() {
        out.insert("context".into(), Value::Object(ctx));
    }
    if !out.contains_key("props") {
        out.insert("props".into(), Value::Object(props));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn track_message_maps_to_event() {
        let message = json!({
            "type": "track", "event": "Order Completed", "userId": "u1", "anonymousId": "a1",
            "messageId": "m1", "timestamp": "2026-11-21T05:00:00Z",
            "properties": {"sku": "123", "revenue": 9.5},
            "context": {"ip": "1.2.3.4", "library": {"name": "analytics-python", "version": "2.3"}, "app": {"version": "10.1.0"}, "campaign": {"source": "newsletter"}}
        });
        let event = to_canonical(message, None);
        assert_eq!(event["action"], "order_completed");
        assert_eq!(event["id"], "m1");
        assert_eq!(event["user"], "u1");
        assert_eq!(event["device"], "a1");
        assert_eq!(event["target"], json!({"type": "sku", "id": "123"}));
        assert_eq!(event["context"]["source"], "newsletter");
        assert_eq!(event["context"]["platform"], "analytics-python");
        assert_eq!(event["context"]["version"], "10.1.0");
        assert_eq!(event["props"]["revenue"], 9.5);
        assert_eq!(event["props"]["event"], "Order Completed");
    }

    #[test]
    fn page_and_identify() {
        let page = to_canonical(json!({"anonymousId": "a", "name": "Home", "properties": {"path": "/"}}), Some("page"));
        assert_eq!(page["action"], "page");
        assert_eq!(page["context"]["page"], "Home");
        let identify = to_canonical(json!({"type": "identify", "userId": "u", "anonymousId": "a", "traits": {"plan": "pro"}}), None);
        assert_eq!(identify["action"], "identify");
        assert_eq!(identify["props"]["plan"], "pro");
    }

    #[test]
    fn unknown_type_has_no_action() {
        let event = to_canonical(json!({"type": "bogus", "userId": "u"}), None);
        assert!(event.get("action").is_none());
    }

    #[test]
    fn event_names_become_actions() {
        assert_eq!(action_from_event_name("Order Completed"), "order_completed");
        assert_eq!(action_from_event_name("  Added to--Cart! "), "added_to_cart");
        assert_eq!(action_from_event_name("!!!"), "");
    }
}
