//! The console's languages: English and Simplified Chinese message catalogs (TOML files
//! embedded from `assets/console/i18n`, sections flattened to `section.key`), and the
//! choice of language: `?lang=` (remembered in the `meridian_lang` cookie), else the
//! cookie, else `Accept-Language`, else English.

use axum::http::{header, HeaderMap};
use std::collections::HashMap;
use std::sync::OnceLock;

/// The cookie that remembers the chosen language.
pub(crate) const LANG_COOKIE: &str = "meridian_lang";

const EN: &str = include_str!("../../assets/console/i18n/en.toml");
const ZH_CN: &str = include_str!("../../assets/console/i18n/zh-CN.toml");

/// A language of the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) enum Lang {
    /// English (the default and the fallback of a missing message).
    #[default]
    En,
    /// Simplified Chinese.
    ZhCn,
}

impl Lang {
    /// Every language, in the order the switcher shows them.
    pub(crate) const ALL: [Lang; 2] = [Lang::En, Lang::ZhCn];

    /// Its BCP 47 tag (`en`, `zh-CN`): the `lang` attribute and the cookie value.
    pub(crate) fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::ZhCn => "zh-CN",
        }
    }

    /// Its name in itself, for the switcher.
    pub(crate) fn native_name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::ZhCn => "简体中文",
        }
    }

    /// The language of a tag or language range (`zh`, `zh-CN`, `zh-Hans-CN`, `en-GB`…).
    pub(crate) fn from_tag(tag: &str) -> Option<Lang> {
        let primary = tag.trim().split(['-', '_']).next().unwrap_or_default().to_ascii_lowercase();
        match primary.as_str() {
            "en" => Some(Lang::En),
            // Traditional Chinese (zh-TW, zh-Hant) is not offered: fall through to English.
            "zh" if !tag.to_ascii_lowercase().contains("hant") && !tag.to_ascii_lowercase().ends_with("-tw") && !tag.to_ascii_lowercase().ends_with("-hk") => Some(Lang::ZhCn),
            _ => None,
        }
    }

    /// The message `key` in this language (English when this catalog lacks it, the key
    /// itself when no catalog has it).
    pub(crate) fn message(self, key: &str) -> &str {
        let catalogs = catalogs();
        catalogs.get(&self).and_then(|c| c.get(key)).or_else(|| catalogs.get(&Lang::En).and_then(|c| c.get(key))).map(String::as_str).unwrap_or(key)
    }

    /// Every message of this language whose key starts with `prefix` (the scripts' messages).
    pub(crate) fn messages_with_prefix(self, prefix: &str) -> Vec<(&'static str, &'static str)> {
        let catalogs = catalogs();
        let mut out: Vec<(&'static str, &'static str)> = catalogs[&Lang::En]
            .keys()
            .filter(|k| k.starts_with(prefix))
            .map(|k| (k.as_str(), catalogs[&self].get(k).unwrap_or(&catalogs[&Lang::En][k]).as_str()))
            .collect();
        out.sort_unstable();
        out
    }
}

type Catalog = HashMap<String, String>;

fn flatten(prefix: &str, table: &toml::Table, out: &mut Catalog) {
    for (key, value) in table {
        let name = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match value {
            toml::Value::Table(inner) => flatten(&name, inner, out),
            toml::Value::String(text) => {
                out.insert(name, text.clone());
            }
            other => panic!("console message {name} is not text: {other}"),
        }
    }
}

/// Parses a catalog (the embedded files are checked by the tests, so a bad one fails them).
pub(crate) fn parse_catalog(text: &str) -> Result<HashMap<String, String>, toml::de::Error> {
    let table: toml::Table = toml::from_str(text)?;
    let mut out = Catalog::new();
    flatten("", &table, &mut out);
    Ok(out)
}

fn catalogs() -> &'static HashMap<Lang, Catalog> {
    static CATALOGS: OnceLock<HashMap<Lang, Catalog>> = OnceLock::new();
    CATALOGS.get_or_init(|| {
        [(Lang::En, EN), (Lang::ZhCn, ZH_CN)]
            .into_iter()
            .map(|(lang, text)| (lang, parse_catalog(text).unwrap_or_else(|e| panic!("the embedded {} console catalog is invalid: {e}", lang.tag()))))
            .collect()
    })
}

/// The best language of an `Accept-Language` header (highest q first, order breaks ties).
fn from_accept_language(value: &str) -> Option<Lang> {
    let mut ranges: Vec<(f32, usize, Lang)> = value
        .split(',')
        .enumerate()
        .filter_map(|(i, part)| {
            let mut pieces = part.split(';');
            let tag = pieces.next()?.trim();
            let q = pieces.find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.parse::<f32>().ok())).unwrap_or(1.0);
            (q > 0.0).then_some(())?;
            Lang::from_tag(tag).map(|lang| (q, i, lang))
        })
        .collect();
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    ranges.first().map(|r| r.2)
}

/// The request's language and whether it was chosen now with `?lang=` (to be remembered).
pub(crate) fn negotiate(headers: &HeaderMap, query_lang: Option<&str>) -> (Lang, bool) {
    if let Some(lang) = query_lang.and_then(Lang::from_tag) {
        return (lang, true);
    }
    if let Some(lang) = crate::auth::cookie(headers, LANG_COOKIE).and_then(Lang::from_tag) {
        return (lang, false);
    }
    let accepted = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).and_then(from_accept_language);
    (accepted.unwrap_or_default(), false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn both_catalogs_parse_and_have_the_same_keys() {
        let en = parse_catalog(EN).unwrap();
        let zh = parse_catalog(ZH_CN).unwrap();
        let mut missing_in_zh: Vec<_> = en.keys().filter(|k| !zh.contains_key(*k)).collect();
        let mut missing_in_en: Vec<_> = zh.keys().filter(|k| !en.contains_key(*k)).collect();
        missing_in_zh.sort();
        missing_in_en.sort();
        assert!(missing_in_zh.is_empty() && missing_in_en.is_empty(), "zh-CN lacks {missing_in_zh:?}; en lacks {missing_in_en:?}");
        assert!(en.len() > 100, "{} messages", en.len());
    }

    /// The message keys `source` names after `opener` (a call like `t("` or `msg('`).
    fn keys_named<'a>(source: &'a str, opener: &str) -> Vec<&'a str> {
        let quote = opener.chars().last().unwrap();
        let mut keys = Vec::new();
        let mut rest = source;
        while let Some(start) = rest.find(opener) {
            let after = &rest[start + opener.len()..];
            let end = after.find(quote).unwrap();
            // Only a call of that name, not of a longer one (`get("…")` is not `t("…")`).
            let whole_name = !rest[..start].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '.');
            if whole_name || opener.starts_with("message") || opener.starts_with("msg") {
                keys.push(&after[..end]);
            }
            rest = &after[end..];
        }
        keys
    }

    #[test]
    fn every_message_a_template_the_code_or_the_script_names_exists() {
        let en = parse_catalog(EN).unwrap();
        let known = |key: &str| {
            // `t("roles." ~ role)`, `msg('erase_module_' + status)`: a prefix of known keys.
            if key.ends_with('.') || key.ends_with('_') {
                en.keys().any(|k| k.starts_with(key))
            } else {
                en.contains_key(key)
            }
        };
        let mut missing = Vec::new();
        let templates = super::super::render::TEMPLATES.iter().map(|(_, s)| *s);
        for source in templates.chain(super::super::SOURCES.iter().copied()) {
            for opener in ["t(\"", "t('", "message(\"", "label: \"", "title: \""] {
                missing.extend(keys_named(source, opener).into_iter().filter(|k| !known(k) && !k.contains(' ')).map(str::to_owned));
            }
            for opener in ["msg('", "msg(\""] {
                missing.extend(keys_named(source, opener).into_iter().map(|k| format!("js.{k}")).filter(|k| !known(k)));
            }
        }
        missing.sort();
        missing.dedup();
        assert!(missing.is_empty(), "messages used but not in en.toml: {missing:?}");
    }

    #[test]
    fn the_language_comes_from_the_query_then_the_cookie_then_accept_language() {
        let mut headers = HeaderMap::new();
        assert_eq!(negotiate(&headers, None), (Lang::En, false));
        headers.insert(header::ACCEPT_LANGUAGE, HeaderValue::from_static("fr;q=1, zh-CN;q=0.8, en;q=0.5"));
        assert_eq!(negotiate(&headers, None), (Lang::ZhCn, false));
        headers.insert(header::ACCEPT_LANGUAGE, HeaderValue::from_static("zh-TW, en-GB;q=0.9"));
        assert_eq!(negotiate(&headers, None), (Lang::En, false), "traditional Chinese is not offered");
        headers.insert(header::COOKIE, HeaderValue::from_static("a=b; meridian_lang=zh-CN"));
        assert_eq!(negotiate(&headers, None), (Lang::ZhCn, false));
        assert_eq!(negotiate(&headers, Some("en")), (Lang::En, true));
        assert_eq!(negotiate(&headers, Some("klingon")), (Lang::ZhCn, false));
    }

    #[test]
    fn a_missing_message_falls_back_to_english_then_to_its_key() {
        assert_eq!(Lang::ZhCn.message("no.such.key"), "no.such.key");
        assert_eq!(Lang::En.message("nav.overview"), "Overview");
        assert_ne!(Lang::ZhCn.message("nav.overview"), "Overview");
    }
}
