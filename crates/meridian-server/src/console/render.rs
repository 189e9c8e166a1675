//! The console's template environment: every template embedded from
//! `assets/console/templates` (HTML auto-escaped), the `t` function (a message of the
//! page's language, `{name}` placeholders filled from keyword arguments) and the filters
//! pages use for times, numbers and JSON.

use super::i18n::Lang;
use meridian_tenancy::TimeZoneName;
use minijinja::value::Kwargs;
use minijinja::{Environment, Error, ErrorKind, State, Value};
use std::sync::OnceLock;

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../assets/console/templates/", $name)))),*]
    };
}

/// Every template, by name.
pub(crate) static TEMPLATES: &[(&str, &str)] = templates![
    "layout.html",
    "macros.html",
    "login.html",
    "error.html",
    "no_apps.html",
    "overview.html",
    "users.html",
    "history_rebuild.html",
    "actions.html",
    "profile.html",
    "webhooks.html",
    "deliveries.html",
    "delivery.html",
    "alerts.html",
    "alert_rule.html",
    "listing.html",
    "keys.html",
    "operators.html",
    "audit.html",
    "admin.html",
];

/// The environment, built once.
pub(crate) fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        env.set_formatter(format_value);
        for (name, source) in TEMPLATES {
            env.add_template(name, source).unwrap_or_else(|e| panic!("console template {name} is invalid: {e:#}"));
        }
        env.add_function("t", translate);
        env.add_filter("datetime", datetime);
        env.add_filter("time_tag", time_tag);
        env.add_filter("clip", clip);
        env.add_filter("iso", iso);
        env.add_filter("num", num);
        env.add_filter("pretty_json", pretty_json);
        env
    })
}

/// Writes a value into the page: text escaped for HTML (`& < > " '`, leaving `/` as it is
/// so URLs stay readable), everything else as minijinja does.
pub(crate) fn format_value(out: &mut minijinja::Output, state: &mut State, value: &Value) -> Result<(), Error> {
    match value.as_str() {
        Some(text) if !value.is_safe() && matches!(state.auto_escape(), minijinja::AutoEscape::Html) => {
            let mut start = 0;
            for (i, byte) in text.bytes().enumerate() {
                let entity = match byte {
                    b'&' => "&amp;",
                    b'<' => "&lt;",
                    b'>' => "&gt;",
                    b'"' => "&quot;",
                    b'\'' => "&#39;",
                    _ => continue,
                };
                out.write_str(&text[start..i])?;
                out.write_str(entity)?;
                start = i + 1;
            }
            out.write_str(&text[start..])?;
            Ok(())
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// The language of the page being rendered (its context's `lang`).
fn lang_of(state: &State) -> Lang {
    state.lookup("lang").and_then(|v| v.as_str().and_then(Lang::from_tag)).unwrap_or_default()
}

/// `t("key", name=value…)`: the message in the page's language with `{name}` filled.
fn translate(state: &State, key: &str, kwargs: Kwargs) -> Result<String, Error> {
    let mut text = lang_of(state).message(key).to_owned();
    for name in kwargs.args().map(str::to_owned).collect::<Vec<_>>() {
        let value: Value = kwargs.get(&name)?;
        text = text.replace(&format!("{{{name}}}"), &value.to_string());
    }
    Ok(text)
}

/// Formats `ms` (since the epoch) as `YYYY-MM-DD HH:MM:SS` in `zone`.
pub(crate) fn format_time(ms: i64, zone: &TimeZoneName) -> String {
    let Some(utc) = chrono::DateTime::from_timestamp_millis(ms) else { return ms.to_string() };
    utc.with_timezone(&zone.tz()).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// `ms|datetime`: the time in the page's time zone (its context's `tz`).
fn datetime(state: &State, ms: Value) -> Result<String, Error> {
    if ms.is_none() || ms.is_undefined() {
        return Ok("—".to_owned());
    }
    let ms = i64::try_from(ms.clone()).map_err(|_| Error::new(ErrorKind::InvalidOperation, format!("datetime needs milliseconds, not {ms}")))?;
    let zone = state.lookup("tz").and_then(|v| v.as_str().and_then(|z| TimeZoneName::new(z).ok())).unwrap_or_default();
    Ok(format_time(ms, &zone))
}

/// `ms|time_tag`: `<time datetime="…">` with the time in the page's time zone (— for none).
fn time_tag(state: &State, ms: Value) -> Result<Value, Error> {
    if ms.is_none() || ms.is_undefined() {
        return Ok(Value::from("—"));
    }
    let text = datetime(state, ms.clone())?;
    let iso = iso(i64::try_from(ms).unwrap_or_default());
    Ok(Value::from_safe_string(format!("<time datetime=\"{iso}\">{text}</time>")))
}

/// `text|clip(n)`: at most `n` characters, `…` when cut.
fn clip(text: &str, n: usize) -> String {
    match text.char_indices().nth(n) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// `ms|iso`: RFC 3339 in UTC, for `<time datetime>`.
fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)).unwrap_or_default()
}

/// `n|num`: an integer with thousands separators (`12,345`).
fn num(value: Value) -> String {
    let Ok(n) = i64::try_from(value.clone()) else { return value.to_string() };
    let sign = if n < 0 { "-" } else { "" };
    format!("{sign}{}", super::group_digits(n.unsigned_abs()))
}

/// `value|pretty_json`: indented JSON (escaped like any text when rendered).
fn pretty_json(value: Value) -> String {
    let json = serde_json::to_value(&value).unwrap_or_default();
    serde_json::to_string_pretty(&json).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles() {
        let env = environment();
        for (name, _) in TEMPLATES {
            env.get_template(name).unwrap();
        }
    }

    #[test]
    fn numbers_get_separators_and_times_their_zone() {
        assert_eq!(num(Value::from(1234567)), "1,234,567");
        assert_eq!(num(Value::from(-1000)), "-1,000");
        assert_eq!(num(Value::from(999)), "999");
        let shanghai = TimeZoneName::new("Asia/Shanghai").unwrap();
        assert_eq!(format_time(0, &shanghai), "1970-01-01 08:00:00");
        assert_eq!(format_time(0, &TimeZoneName::default()), "1970-01-01 00:00:00");
        assert_eq!(iso(1_000), "1970-01-01T00:00:01.000Z");
    }

    #[test]
    fn text_is_escaped_for_html_but_urls_stay_readable() {
        let html = environment().render_named_str("test.html", "<a href=\"{{ u }}\">{{ t }}</a>", minijinja::context! { u => "/console/apps/a?x=1&y=2", t => "<b>\"it's\"</b>" }).unwrap();
        assert_eq!(html, "<a href=\"/console/apps/a?x=1&amp;y=2\">&lt;b&gt;&quot;it&#39;s&quot;&lt;/b&gt;</a>");
    }

    #[test]
    fn clip_cuts_on_characters() {
        assert_eq!(clip("héllo", 2), "hé…");
        assert_eq!(clip("hé", 2), "hé");
    }

    #[test]
    fn messages_and_times_in_macros_and_included_templates_follow_the_page() {
        let mut env = Environment::new();
        env.add_function("t", translate);
        env.add_filter("time_tag", time_tag);
        env.add_template("m", "{% macro x() %}{{ t('nav.overview') }} {{ 0|time_tag }}{% endmacro %}").unwrap();
        env.add_template("p", "{% import 'm' as m %}{% macro y() %}{{ t('nav.overview') }}{% endmacro %}[{{ m.x() }}][{{ y() }}]").unwrap();
        let out = env.get_template("p").unwrap().render(minijinja::context! { lang => "zh-CN", tz => "Asia/Shanghai" }).unwrap();
        let overview = Lang::ZhCn.message("nav.overview");
        assert_eq!(out.matches(overview).count(), 2, "{out}");
        assert!(out.contains("08:00:00"), "{out}");
    }

    #[test]
    fn t_fills_placeholders_in_the_page_language() {
        let mut env = Environment::new();
        env.add_function("t", translate);
        env.add_template("x", "{{ t('layout.signed_in_as', name=who) }}").unwrap();
        let en = env.get_template("x").unwrap().render(minijinja::context! { lang => "en", who => "Ann" }).unwrap();
        let zh = env.get_template("x").unwrap().render(minijinja::context! { lang => "zh-CN", who => "Ann" }).unwrap();
        assert!(en.contains("Ann") && zh.contains("Ann"), "{en} / {zh}");
        assert_ne!(en, zh);
    }
}
