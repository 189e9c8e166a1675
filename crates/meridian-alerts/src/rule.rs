//! Alert rules: the model (plain serde types, JSON-friendly) and its validation with
//! errors that name the field and carry a stable code.

use meridian_event::AppId;
use meridian_pipeline::{ConditionConfig, EventField, EventFilter};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// Longest rule name, in bytes.
pub const MAX_NAME_LEN: usize = 200;
/// Largest window: one week.
pub const MAX_WINDOW_SECS: u64 = 7 * 86_400;
/// Most panes (`size / slide`) a sliding window may have.
pub const MAX_PANES: u64 = 1_440;
/// Largest allowed lateness: one day.
pub const MAX_LATENESS_SECS: u64 = 86_400;
/// Largest cool-down: 30 days.
pub const MAX_COOLDOWN_SECS: u64 = 30 * 86_400;
/// Most channels of one rule.
pub const MAX_CHANNELS: usize = 16;
/// Longest channel id, in bytes.
pub const MAX_CHANNEL_LEN: usize = 128;
/// Weeks of seasonal history kept per rule (and the largest `min_history`).
pub const HISTORY_WEEKS: u32 = 8;
/// Most windows a day/week comparison may look back over (a week of 1-minute windows).
pub const MAX_COMPARISON_STEPS: u64 = 10_080;

/// A rule's id: `[a-z0-9_.-]{1,64}`, unique across apps (the server makes them). Shared,
/// so the evaluations and timers that name it copy no string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RuleId(Arc<str>);

impl RuleId {
    /// Longest id, in bytes.
    pub const MAX_LEN: usize = 64;

    /// Validates and wraps `value`.
    pub fn new(value: impl Into<String>) -> Result<RuleId, RuleError> {
        let value = value.into();
        let ok = !value.is_empty()
            && value.len() <= Self::MAX_LEN
            && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-' || b == b'.');
        if !ok {
            let shown: String = value.chars().take(70).collect();
            return Err(RuleError::new("id", RuleErrorCode::InvalidId, format!("rule id {shown:?} must be 1-64 of lowercase ascii letters, digits, '_', '-' and '.'")));
        }
        Ok(RuleId(Arc::from(value)))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RuleId {
    type Error = RuleError;
    fn try_from(value: String) -> Result<RuleId, RuleError> {
        RuleId::new(value)
    }
}

impl From<RuleId> for String {
    fn from(id: RuleId) -> String {
        id.0.to_string()
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How bad it is when the rule fires (copied into every transition).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// For information.
    Info,
    /// Someone should look.
    #[default]
    Warning,
    /// Someone should look now.
    Critical,
}

impl Severity {
    /// Its name in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// What a rule measures over each window, from the events its filter selects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Metric {
    /// Matching events.
    Count,
    /// Distinct users among matching events (the device for an anonymous event).
    DistinctUsers,
    /// Matching events that match `numerator` divided by those that match `denominator`
    /// (crashes per launch, errors per request); no value when the denominator is 0.
    Ratio {
        /// Events counted above the line.
        numerator: ConditionConfig,
        /// Events counted below the line.
        denominator: ConditionConfig,
    },
    /// The `p`-th percentile (0–100) of a numeric field (`props.latency_ms`) of matching
    /// events; events without a number there are not counted.
    Percentile {
        /// Which percentile, 0–100 (50 is the median).
        p: f64,
        /// The event path read as a number.
        field: String,
    },
}

impl Metric {
    /// Its `kind` in JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Metric::Count => "count",
            Metric::DistinctUsers => "distinct_users",
            Metric::Ratio { .. } => "ratio",
            Metric::Percentile { .. } => "percentile",
        }
    }

    /// A short description for reasons (`count`, `p95 of props.latency_ms`).
    pub fn describe(&self) -> String {
        match self {
            Metric::Count => "count".into(),
            Metric::DistinctUsers => "distinct users".into(),
            Metric::Ratio { .. } => "ratio".into(),
            Metric::Percentile { p, field } => format!("p{p} of {field}"),
        }
    }
}

/// A rule's windows, by event time, aligned to the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WindowSpec {
    /// Back-to-back windows of `size_secs`.
    Tumbling {
        /// Window length, seconds.
        size_secs: u64,
    },
    /// Windows of `size_secs` starting every `slide_secs` (`size_secs` a multiple of it);
    /// kept as panes of `slide_secs`, each event added to one pane.
    Sliding {
        /// Window length, seconds.
        size_secs: u64,
        /// Distance between window starts, seconds.
        slide_secs: u64,
    },
}

impl WindowSpec {
    /// Window length, seconds.
    pub fn size_secs(self) -> u64 {
        match self {
            WindowSpec::Tumbling { size_secs } | WindowSpec::Sliding { size_secs, .. } => size_secs,
        }
    }

    /// Distance between window starts (the pane length), seconds.
    pub fn slide_secs(self) -> u64 {
        match self {
            WindowSpec::Tumbling { size_secs } => size_secs,
            WindowSpec::Sliding { slide_secs, .. } => slide_secs,
        }
    }
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CompareOp {
    /// Greater than.
    #[serde(rename = ">")]
    Gt,
    /// Greater than or equal.
    #[serde(rename = ">=")]
    Ge,
    /// Less than.
    #[serde(rename = "<")]
    Lt,
    /// Less than or equal.
    #[serde(rename = "<=")]
    Le,
}

impl CompareOp {
    /// `left op right`.
    pub fn holds(self, left: f64, right: f64) -> bool {
        match self {
            CompareOp::Gt => left > right,
            CompareOp::Ge => left >= right,
            CompareOp::Lt => left < right,
            CompareOp::Le => left <= right,
        }
    }

    /// Its symbol.
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<CompareOp> {
        Some(match text {
            ">" => CompareOp::Gt,
            ">=" => CompareOp::Ge,
            "<" => CompareOp::Lt,
            "<=" => CompareOp::Le,
            _ => return None,
        })
    }
}

/// How far back a change condition looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// The same window 24 hours earlier.
    Day,
    /// The same window 7 days earlier.
    Week,
}

impl Period {
    /// Its length in milliseconds.
    pub fn millis(self) -> i64 {
        match self {
            Period::Day => 86_400_000,
            Period::Week => 7 * 86_400_000,
        }
    }

    /// Its name in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
        }
    }
}

/// Which side of the forecast counts as a deviation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Only values above the baseline.
    Above,
    /// Only values below it.
    Below,
    /// Either side.
    #[default]
    Both,
}

impl Direction {
    /// Its name in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Above => "above",
            Direction::Below => "below",
            Direction::Both => "both",
        }
    }
}

/// When a window's value is a breach.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Condition {
    /// `value op threshold`.
    Threshold {
        /// The comparison.
        op: CompareOp,
        /// The threshold.
        value: f64,
    },
    /// The change in percent against the same window a day or a week earlier:
    /// `(value - earlier) / |earlier| * 100  op  percent` (`> 50`: up more than half;
    /// `< -30`: down more than 30 %). From 0 to anything positive is +∞ %.
    Change {
        /// The comparison.
        op: CompareOp,
        /// The change, percent.
        percent: f64,
        /// A day or a week earlier.
        against: Period,
    },
    /// Deviation from a seasonal baseline learned from the rule's own history: the median
    /// of the values in the same hour of the week over the last weeks (up to 8), with the
    /// median absolute deviation (MAD) as spread; a breach when the value is more than `k`
    /// scaled MADs away (see the crate docs for why not Holt-Winters).
    Forecast {
        /// How many robust standard deviations (1.4826 × MAD) make a deviation.
        k: f64,
        /// Past weeks needed in the hour-of-week slot before the rule evaluates (1–8).
        min_history: u32,
        /// Which side counts.
        #[serde(default)]
        direction: Direction,
    },
}

impl Condition {
    /// Its `kind` in JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Condition::Threshold { .. } => "threshold",
            Condition::Change { .. } => "change",
            Condition::Forecast { .. } => "forecast",
        }
    }
}

/// One alert rule of one app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Its id (unique across apps).
    pub id: RuleId,
    /// The app whose events it watches.
    pub app: AppId,
    /// A human name (1–200 bytes).
    pub name: String,
    /// Bumped by every change ([`crate::RuleSet`] does it); every evaluation and alert
    /// records the version that produced it.
    #[serde(default)]
    pub version: u64,
    /// A paused rule keeps no windows and evaluates nothing.
    #[serde(default)]
    pub paused: bool,
    /// How bad a firing is.
    #[serde(default)]
    pub severity: Severity,
    /// What is measured.
    pub metric: Metric,
    /// Which events count (the pipeline's condition language); all of the app's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<ConditionConfig>,
    /// Its windows.
    pub window: WindowSpec,
    /// How long after a window's end (by the app's watermark) it stays open for late events.
    #[serde(default)]
    pub allowed_lateness_secs: u64,
    /// When a window's value is a breach.
    pub condition: Condition,
    /// Windows with fewer samples (events; the denominator of a ratio; the values of a
    /// percentile) are not judged either way.
    #[serde(default)]
    pub min_samples: u64,
    /// After firing, a new firing waits at least this long (by window end).
    #[serde(default)]
    pub cooldown_secs: u64,
    /// Where notifications go: endpoint ids the server resolves, each with the body its
    /// receiver reads.
    #[serde(default)]
    pub channels: Vec<Channel>,
}

/// The body a channel's receiver reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyFormat {
    /// The Alertmanager webhook body (version 4): what Alertmanager receivers, Grafana
    /// OnCall, PagerDuty's and Opsgenie's Alertmanager integrations read.
    #[default]
    Alertmanager,
    /// A chat message, `{"text": "…"}` with Markdown: what Slack, Mattermost and
    /// Rocket.Chat incoming webhooks read.
    Chat,
}

impl BodyFormat {
    /// Its name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            BodyFormat::Alertmanager => "alertmanager",
            BodyFormat::Chat => "chat",
        }
    }
}

/// One destination of a rule's notifications: a webhook endpoint of the app and the body
/// format. In JSON a bare string is an endpoint with the Alertmanager body; otherwise
/// `{"endpoint": "…", "format": "chat"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Channel {
    /// The notify module's endpoint id.
    pub endpoint: String,
    /// The body sent to it.
    pub format: BodyFormat,
}

impl Channel {
    /// An endpoint with the Alertmanager body.
    pub fn alertmanager(endpoint: impl Into<String>) -> Channel {
        Channel { endpoint: endpoint.into(), format: BodyFormat::Alertmanager }
    }
}

impl Serialize for Channel {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Full<'a> {
            endpoint: &'a str,
            format: BodyFormat,
        }
        match self.format {
            BodyFormat::Alertmanager => serializer.serialize_str(&self.endpoint),
            format => Full { endpoint: &self.endpoint, format }.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Channel {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Bare(String),
            Full {
                endpoint: String,
                #[serde(default)]
                format: BodyFormat,
            },
        }
        Ok(match Form::deserialize(deserializer)? {
            Form::Bare(endpoint) => Channel::alertmanager(endpoint),
            Form::Full { endpoint, format } => Channel { endpoint, format },
        })
    }
}

/// A stable, machine-readable reason a rule is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleErrorCode {
    /// A required field is missing.
    Required,
    /// A field has the wrong JSON type.
    InvalidType,
    /// A field's value is not one of those accepted.
    InvalidValue,
    /// An unknown key in the rule, or an unknown event path in a filter or field.
    UnknownField,
    /// An unknown `metric.kind`.
    UnknownMetric,
    /// An unknown `window.kind`.
    UnknownWindow,
    /// An unknown `condition.kind`.
    UnknownCondition,
    /// A malformed rule id.
    InvalidId,
    /// A string that must not be empty is.
    Empty,
    /// A string is too long.
    TooLong,
    /// A filter does not compile.
    InvalidFilter,
    /// A field that cannot hold a number is used as one.
    NotNumeric,
    /// A number outside its range (percentile 0–100, k > 0, min_history 1–8).
    OutOfRange,
    /// NaN or infinite.
    NotFinite,
    /// A duration that must be positive is 0.
    Zero,
    /// A duration or count above its limit.
    TooLarge,
    /// The slide is longer than the window.
    SlideLargerThanSize,
    /// The window is not a whole number of slides.
    NotAMultiple,
    /// More panes than [`MAX_PANES`].
    TooManyPanes,
    /// The slide does not divide the comparison period, so the earlier window does not exist.
    NotAligned,
    /// A duplicated value in a list.
    Duplicate,
    /// A field that cannot change (the app of an existing rule).
    Immutable,
}

impl RuleErrorCode {
    /// The stable code (codes are added, never renamed).
    pub fn as_str(self) -> &'static str {
        match self {
            RuleErrorCode::Required => "required",
            RuleErrorCode::InvalidType => "invalid_type",
            RuleErrorCode::InvalidValue => "invalid_value",
            RuleErrorCode::UnknownField => "unknown_field",
            RuleErrorCode::UnknownMetric => "unknown_metric",
            RuleErrorCode::UnknownWindow => "unknown_window",
            RuleErrorCode::UnknownCondition => "unknown_condition",
            RuleErrorCode::InvalidId => "invalid_id",
            RuleErrorCode::Empty => "empty",
            RuleErrorCode::TooLong => "too_long",
            RuleErrorCode::InvalidFilter => "invalid_filter",
            RuleErrorCode::NotNumeric => "not_numeric",
            RuleErrorCode::OutOfRange => "out_of_range",
            RuleErrorCode::NotFinite => "not_finite",
            RuleErrorCode::Zero => "zero",
            RuleErrorCode::TooLarge => "too_large",
            RuleErrorCode::SlideLargerThanSize => "slide_larger_than_size",
            RuleErrorCode::NotAMultiple => "not_a_multiple",
            RuleErrorCode::TooManyPanes => "too_many_panes",
            RuleErrorCode::NotAligned => "not_aligned",
            RuleErrorCode::Duplicate => "duplicate",
            RuleErrorCode::Immutable => "immutable",
        }
    }
}

impl fmt::Display for RuleErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a rule is refused: the field (a dotted path such as `window.slide_secs`), a stable
/// code and a message saying what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RuleError {
    /// The field, as a dotted path into the rule's JSON.
    pub field: String,
    /// The stable code.
    pub code: RuleErrorCode,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl RuleError {
    /// An error of `field`.
    pub fn new(field: impl Into<String>, code: RuleErrorCode, message: impl Into<String>) -> RuleError {
        RuleError { field: field.into(), code, message: message.into() }
    }
}

impl Rule {
    /// Window length, ms.
    pub fn size_ms(&self) -> i64 {
        secs_to_ms(self.window.size_secs())
    }

    /// Slide (pane length), ms.
    pub fn slide_ms(&self) -> i64 {
        secs_to_ms(self.window.slide_secs())
    }

    /// Allowed lateness, ms.
    pub fn lateness_ms(&self) -> i64 {
        secs_to_ms(self.allowed_lateness_secs)
    }

    /// Cool-down, ms.
    pub fn cooldown_ms(&self) -> i64 {
        secs_to_ms(self.cooldown_secs)
    }

    /// Checks everything that can be checked without other rules; the first problem found,
    /// naming its field.
    pub fn validate(&self) -> Result<(), RuleError> {
        use RuleErrorCode as C;
        if self.name.trim().is_empty() {
            return Err(RuleError::new("name", C::Empty, "a rule needs a name"));
        }
        if self.name.len() > MAX_NAME_LEN {
            return Err(RuleError::new("name", C::TooLong, format!("the name is {} bytes, the limit is {MAX_NAME_LEN}", self.name.len())));
        }
        if let Some(filter) = &self.filter {
            compile_filter("filter", filter)?;
        }
        match &self.metric {
            Metric::Count | Metric::DistinctUsers => {}
            Metric::Ratio { numerator, denominator } => {
                compile_filter("metric.numerator", numerator)?;
                compile_filter("metric.denominator", denominator)?;
            }
            Metric::Percentile { p, field } => {
                if !p.is_finite() || !(0.0..=100.0).contains(p) {
                    return Err(RuleError::new("metric.p", C::OutOfRange, format!("a percentile is between 0 and 100, got {p}")));
                }
                compile_numeric_field("metric.field", field)?;
            }
        }
        let size = self.window.size_secs();
        let slide = self.window.slide_secs();
        if size == 0 {
            return Err(RuleError::new("window.size_secs", C::Zero, "a window must last at least 1 second"));
        }
        if size > MAX_WINDOW_SECS {
            return Err(RuleError::new("window.size_secs", C::TooLarge, format!("a window lasts at most {MAX_WINDOW_SECS} s (7 days), got {size}")));
        }
        if let WindowSpec::Sliding { .. } = self.window {
            if slide == 0 {
                return Err(RuleError::new("window.slide_secs", C::Zero, "a slide must be at least 1 second"));
            }
            if slide > size {
                return Err(RuleError::new(
                    "window.slide_secs",
                    C::SlideLargerThanSize,
                    format!("the slide ({slide} s) is longer than the window ({size} s); windows would leave gaps"),
                ));
            }
            if !size.is_multiple_of(slide) {
                return Err(RuleError::new("window.size_secs", C::NotAMultiple, format!("the window ({size} s) must be a whole number of slides ({slide} s)")));
            }
            if size / slide > MAX_PANES {
                return Err(RuleError::new(
                    "window.slide_secs",
                    C::TooManyPanes,
                    format!("{} panes per window; at most {MAX_PANES} (a longer slide or a shorter window)", size / slide),
                ));
            }
        }
        if self.allowed_lateness_secs > MAX_LATENESS_SECS {
            return Err(RuleError::new(
                "allowed_lateness_secs",
                C::TooLarge,
                format!("allowed lateness is at most {MAX_LATENESS_SECS} s (1 day), got {}", self.allowed_lateness_secs),
            ));
        }
        match &self.condition {
            Condition::Threshold { value, .. } => {
                if !value.is_finite() {
                    return Err(RuleError::new("condition.value", C::NotFinite, "the threshold must be a finite number"));
                }
            }
            Condition::Change { percent, against, .. } => {
                if !percent.is_finite() {
                    return Err(RuleError::new("condition.percent", C::NotFinite, "the change must be a finite number of percent"));
                }
                let period_secs = (against.millis() / 1000) as u64;
                if size > period_secs {
                    return Err(RuleError::new(
                        "window.size_secs",
                        C::TooLarge,
                        format!("a window compared with a {} earlier lasts at most {period_secs} s", against.as_str()),
                    ));
                }
                if !period_secs.is_multiple_of(slide) {
                    return Err(RuleError::new(
                        "window.slide_secs",
                        C::NotAligned,
                        format!("the slide ({slide} s) must divide a {} ({period_secs} s) so the same window a {} earlier exists", against.as_str(), against.as_str()),
                    ));
                }
                if period_secs / slide > MAX_COMPARISON_STEPS {
                    return Err(RuleError::new(
                        "window.slide_secs",
                        C::TooManyPanes,
                        format!("comparing with a {} earlier keeps {} window values; at most {MAX_COMPARISON_STEPS} (a longer slide)", against.as_str(), period_secs / slide),
                    ));
                }
            }
            Condition::Forecast { k, min_history, .. } => {
                if !k.is_finite() || *k <= 0.0 {
                    return Err(RuleError::new("condition.k", C::OutOfRange, format!("k must be a positive number of deviations, got {k}")));
                }
                if *min_history == 0 || *min_history > HISTORY_WEEKS {
                    return Err(RuleError::new(
                        "condition.min_history",
                        C::OutOfRange,
                        format!("min_history is 1 to {HISTORY_WEEKS} past weeks, got {min_history}"),
                    ));
                }
            }
        }
        if self.cooldown_secs > MAX_COOLDOWN_SECS {
            return Err(RuleError::new("cooldown_secs", C::TooLarge, format!("a cool-down lasts at most {MAX_COOLDOWN_SECS} s (30 days), got {}", self.cooldown_secs)));
        }
        if self.channels.len() > MAX_CHANNELS {
            return Err(RuleError::new("channels", C::TooLarge, format!("{} channels; at most {MAX_CHANNELS}", self.channels.len())));
        }
        for (i, channel) in self.channels.iter().enumerate() {
            let field = format!("channels[{i}]");
            let channel = &channel.endpoint;
            if channel.is_empty() {
                return Err(RuleError::new(field, C::Empty, "a channel id must not be empty"));
            }
            if channel.len() > MAX_CHANNEL_LEN || channel.chars().any(char::is_control) {
                return Err(RuleError::new(field, C::InvalidValue, format!("a channel id is 1-{MAX_CHANNEL_LEN} bytes without control characters")));
            }
            if self.channels[..i].iter().any(|c| &c.endpoint == channel) {
                return Err(RuleError::new(field, C::Duplicate, format!("channel {channel:?} is listed twice")));
            }
        }
        Ok(())
    }
}

fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// Compiles a filter, naming `field` in the error.
pub(crate) fn compile_filter(field: &str, filter: &ConditionConfig) -> Result<EventFilter, RuleError> {
    EventFilter::compile(filter).map_err(|message| {
        let code = if message.starts_with("unknown") { RuleErrorCode::UnknownField } else { RuleErrorCode::InvalidFilter };
        RuleError::new(field, code, message)
    })
}

/// Parses a numeric event path, naming `field` in the error.
pub(crate) fn compile_numeric_field(field: &str, path: &str) -> Result<EventField, RuleError> {
    let parsed = EventField::parse(path).map_err(|message| RuleError::new(field, RuleErrorCode::UnknownField, message))?;
    if !parsed.can_be_numeric() {
        return Err(RuleError::new(field, RuleErrorCode::NotNumeric, format!("\"{path}\" never holds a number; use props.<key>, time, received or context.city")));
    }
    Ok(parsed)
}
