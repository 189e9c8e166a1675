//! Chart geometry for server-rendered SVG: horizontal bars (events by action) and a line
//! with its axis (events by day). Templates draw what these compute.

use serde::Serialize;

/// One bar.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Bar {
    /// What it counts.
    pub(crate) label: String,
    /// The count.
    pub(crate) value: u64,
    /// Top of the bar.
    pub(crate) y: u32,
    /// Length of the bar.
    pub(crate) width: u32,
}

/// A horizontal bar chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct BarChart {
    /// Drawing width.
    pub(crate) width: u32,
    /// Drawing height.
    pub(crate) height: u32,
    /// Where bars start (labels are left of it).
    pub(crate) bar_x: u32,
    /// Height of one bar.
    pub(crate) bar_height: u32,
    /// The bars, largest first.
    pub(crate) bars: Vec<Bar>,
}

const BAR_WIDTH: u32 = 560;
const BAR_LABELS: u32 = 130;
const BAR_ROW: u32 = 26;
const BAR_HEIGHT: u32 = 18;
const BAR_VALUES: u32 = 70;

/// Bars for `counts`, the `max_bars` largest (largest first, ties by label).
pub(crate) fn bar_chart(counts: impl IntoIterator<Item = (String, u64)>, max_bars: usize) -> BarChart {
    let mut counts: Vec<(String, u64)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts.truncate(max_bars);
    let max = counts.iter().map(|c| c.1).max().unwrap_or(0).max(1);
    let room = BAR_WIDTH - BAR_LABELS - BAR_VALUES;
    let bars = counts
        .into_iter()
        .enumerate()
        .map(|(i, (label, value))| Bar { label, value, y: i as u32 * BAR_ROW, width: ((value as f64 / max as f64) * room as f64).round().max(1.0) as u32 })
        .collect::<Vec<_>>();
    BarChart { width: BAR_WIDTH, height: (bars.len() as u32 * BAR_ROW).max(BAR_ROW), bar_x: BAR_LABELS, bar_height: BAR_HEIGHT, bars }
}

/// A point of the line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Point {
    /// The day.
    pub(crate) label: String,
    /// The count.
    pub(crate) value: u64,
    /// Position.
    pub(crate) x: f64,
    /// Position.
    pub(crate) y: f64,
}

/// A mark on an axis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Tick {
    /// Its text.
    pub(crate) label: String,
    /// Its position along the axis.
    pub(crate) at: f64,
}

/// A line chart with a y axis from 0 and labelled days.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct LineChart {
    /// Drawing width.
    pub(crate) width: u32,
    /// Drawing height.
    pub(crate) height: u32,
    /// Left edge of the plot.
    pub(crate) left: u32,
    /// Bottom edge of the plot.
    pub(crate) bottom: u32,
    /// Right edge of the plot.
    pub(crate) right: u32,
    /// The points, oldest first.
    pub(crate) points: Vec<Point>,
    /// `x,y x,y …` for `<polyline points>`.
    pub(crate) polyline: String,
    /// Marks of the y axis.
    pub(crate) y_ticks: Vec<Tick>,
    /// Marks of the x axis (at most about six days are labelled).
    pub(crate) x_ticks: Vec<Tick>,
}

const LINE_WIDTH: u32 = 560;
const LINE_HEIGHT: u32 = 220;
const LINE_LEFT: u32 = 64;
const LINE_RIGHT: u32 = 16;
const LINE_TOP: u32 = 12;
const LINE_BOTTOM: u32 = 28;

/// A "nice" upper bound of the axis for `max` (1, 2 or 5 × a power of ten).
fn nice_ceiling(max: u64) -> u64 {
    let mut step = 1u64;
    loop {
        for factor in [1, 2, 5] {
            if step.saturating_mul(factor) >= max {
                return step.saturating_mul(factor).max(1);
            }
        }
        step = step.saturating_mul(10);
    }
}

/// The line of `counts` (by day, oldest first), the last `max_days` days.
pub(crate) fn line_chart(counts: impl IntoIterator<Item = (String, u64)>, max_days: usize) -> LineChart {
    let mut counts: Vec<(String, u64)> = counts.into_iter().collect();
    counts.sort_by(|a, b| a.0.cmp(&b.0));
    let skip = counts.len().saturating_sub(max_days);
    // Ticks show the month and day of `YYYY-MM-DD`.
    plot(&counts[skip..], |label| label.get(5..).unwrap_or(label).to_owned())
}

/// The line of `points` in the order given (a time series: labels are times), labelled
/// as they are.
pub(crate) fn series_chart(points: &[(String, u64)]) -> LineChart {
    plot(points, str::to_owned)
}

fn plot(counts: &[(String, u64)], tick_label: impl Fn(&str) -> String) -> LineChart {
    let top = nice_ceiling(counts.iter().map(|c| c.1).max().unwrap_or(0));
    let (left, right, bottom) = (LINE_LEFT as f64, (LINE_WIDTH - LINE_RIGHT) as f64, (LINE_HEIGHT - LINE_BOTTOM) as f64);
    let plot_height = bottom - LINE_TOP as f64;
    let step = if counts.len() > 1 { (right - left) / (counts.len() - 1) as f64 } else { 0.0 };
    let points: Vec<Point> = counts
        .iter()
        .enumerate()
        .map(|(i, (label, value))| {
            let x = if counts.len() > 1 { left + step * i as f64 } else { (left + right) / 2.0 };
            let y = bottom - (*value as f64 / top as f64) * plot_height;
            Point { label: label.clone(), value: *value, x: (x * 10.0).round() / 10.0, y: (y * 10.0).round() / 10.0 }
        })
        .collect();
    let polyline = points.iter().map(|p| format!("{},{}", p.x, p.y)).collect::<Vec<_>>().join(" ");
    let y_ticks = (0..=4).map(|i| Tick { label: crate::console::group_digits(top / 4 * i), at: bottom - plot_height * i as f64 / 4.0 }).collect();
    let every = points.len().div_ceil(6).max(1);
    let x_ticks = points
        .iter()
        .enumerate()
        .filter(|(i, _)| i % every == 0 || *i == points.len() - 1)
        .map(|(_, p)| Tick { label: tick_label(&p.label), at: p.x })
        .collect();
    LineChart { width: LINE_WIDTH, height: LINE_HEIGHT, left: LINE_LEFT, bottom: LINE_HEIGHT - LINE_BOTTOM, right: LINE_WIDTH - LINE_RIGHT, points, polyline, y_ticks, x_ticks }
}

/// A rule's metric over time against the value at which its condition flips: the preview
/// of an alert rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ThresholdChart {
    /// Drawing width.
    pub(crate) width: u32,
    /// Drawing height.
    pub(crate) height: u32,
    /// Left edge of the plot.
    pub(crate) left: u32,
    /// Bottom edge of the plot.
    pub(crate) bottom: u32,
    /// Right edge of the plot.
    pub(crate) right: u32,
    /// The metric's line (`x,y …`), broken where a window had no value: one string per run.
    pub(crate) value_lines: Vec<String>,
    /// The threshold's line, broken where there was none.
    pub(crate) threshold_lines: Vec<String>,
    /// Every window with a value, for the dots and the table.
    pub(crate) points: Vec<ThresholdPoint>,
    /// Marks of the y axis.
    pub(crate) y_ticks: Vec<Tick>,
    /// Marks of the x axis.
    pub(crate) x_ticks: Vec<Tick>,
}

/// One window of a [`ThresholdChart`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ThresholdPoint {
    /// Its label (the window's end).
    pub(crate) label: String,
    /// The metric's value.
    pub(crate) value: Option<f64>,
    /// The threshold.
    pub(crate) threshold: Option<f64>,
    /// Whether the window was a breach.
    pub(crate) breach: bool,
    /// Position.
    pub(crate) x: f64,
    /// Position of the value (the axis when none).
    pub(crate) y: f64,
}

/// One window for [`threshold_chart`]: label, value, threshold, breach.
pub(crate) type WindowValue = (String, Option<f64>, Option<f64>, bool);

/// The chart of `windows`, oldest first.
pub(crate) fn threshold_chart(windows: &[WindowValue]) -> ThresholdChart {
    let finite = |v: &Option<f64>| v.filter(|v| v.is_finite());
    let max = windows.iter().flat_map(|w| [finite(&w.1), finite(&w.2)]).flatten().fold(0.0f64, f64::max);
    let min = windows.iter().flat_map(|w| [finite(&w.1), finite(&w.2)]).flatten().fold(0.0f64, f64::min);
    // A nice axis for small ratios too: scale to integers, pick the ceiling, scale back.
    let scale = if max > 0.0 && max < 10.0 { 10f64.powi((10.0 / max).log10().ceil() as i32) } else { 1.0 };
    let top = nice_ceiling((max * scale).ceil() as u64) as f64 / scale;
    let bottom_value = min.min(0.0);
    let (left, right, bottom) = (LINE_LEFT as f64, (LINE_WIDTH - LINE_RIGHT) as f64, (LINE_HEIGHT - LINE_BOTTOM) as f64);
    let plot_height = bottom - LINE_TOP as f64;
    let span = (top - bottom_value).max(f64::MIN_POSITIVE);
    let y_of = |v: f64| ((bottom - (v.clamp(bottom_value, top) - bottom_value) / span * plot_height) * 10.0).round() / 10.0;
    let step = if windows.len() > 1 { (right - left) / (windows.len() - 1) as f64 } else { 0.0 };
    let x_of = |i: usize| ((if windows.len() > 1 { left + step * i as f64 } else { (left + right) / 2.0 }) * 10.0).round() / 10.0;
    let runs = |pick: &dyn Fn(&WindowValue) -> Option<f64>| {
        let mut lines = Vec::new();
        let mut current: Vec<String> = Vec::new();
        for (i, w) in windows.iter().enumerate() {
            match pick(w) {
                Some(v) => current.push(format!("{},{}", x_of(i), y_of(v))),
                None if !current.is_empty() => lines.push(std::mem::take(&mut current).join(" ")),
                None => {}
            }
        }
        if !current.is_empty() {
            lines.push(current.join(" "));
        }
        lines
    };
    let value_lines = runs(&|w| finite(&w.1));
    let threshold_lines = runs(&|w| finite(&w.2));
    let points: Vec<ThresholdPoint> = windows
        .iter()
        .enumerate()
        .map(|(i, w)| ThresholdPoint { label: w.0.clone(), value: finite(&w.1), threshold: finite(&w.2), breach: w.3, x: x_of(i), y: y_of(finite(&w.1).unwrap_or(0.0)) })
        .collect();
    let tick = |v: f64| if v.fract() == 0.0 && v.abs() < 1e15 { crate::console::group_digits(v as u64) } else { format!("{v}") };
    let y_ticks = (0..=4)
        .map(|i| {
            let v = ((bottom_value + span * f64::from(i) / 4.0) * 1e6).round() / 1e6;
            Tick { label: if v < 0.0 { format!("-{}", tick(-v)) } else { tick(v) }, at: y_of(v) }
        })
        .collect();
    let every = points.len().div_ceil(6).max(1);
    let x_ticks = points.iter().enumerate().filter(|(i, _)| i % every == 0 || *i == points.len() - 1).map(|(_, p)| Tick { label: p.label.clone(), at: p.x }).collect();
    ThresholdChart { width: LINE_WIDTH, height: LINE_HEIGHT, left: LINE_LEFT, bottom: LINE_HEIGHT - LINE_BOTTOM, right: LINE_WIDTH - LINE_RIGHT, value_lines, threshold_lines, points, y_ticks, x_ticks }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threshold_chart_draws_both_lines_breaks_them_at_gaps_and_scales_small_ratios() {
        let w = |label: &str, value: Option<f64>, threshold: Option<f64>, breach: bool| (label.to_owned(), value, threshold, breach);
        let chart = threshold_chart(&[w("10:00", Some(0.01), Some(0.05), false), w("10:01", None, Some(0.05), false), w("10:02", Some(0.08), Some(0.05), true), w("10:03", Some(0.02), Some(0.05), false)]);
        assert_eq!(chart.value_lines.len(), 2, "the window without a value breaks the line: {:?}", chart.value_lines);
        assert_eq!(chart.threshold_lines.len(), 1);
        assert_eq!(chart.y_ticks.last().unwrap().label, "0.1", "0.08 rounds up to a nice 0.1, not to 1");
        let breach = &chart.points[2];
        assert!(breach.breach && breach.y < chart.points[0].y, "the breach is higher");
        let threshold_y: f64 = chart.threshold_lines[0].split(' ').next().unwrap().split(',').nth(1).unwrap().parse().unwrap();
        assert!(breach.y < threshold_y && chart.points[0].y > threshold_y, "the breach is above the threshold, the first window below");
        let big = threshold_chart(&[w("a", Some(1_234.0), Some(1_000.0), true)]);
        assert_eq!(big.y_ticks.last().unwrap().label, "2,000");
        assert!(threshold_chart(&[]).points.is_empty());
    }

    #[test]
    fn bars_are_proportional_largest_first_and_bounded() {
        let chart = bar_chart([("view".to_owned(), 100), ("pay".to_owned(), 25), ("cart".to_owned(), 50)], 2);
        assert_eq!(chart.bars.iter().map(|b| b.label.as_str()).collect::<Vec<_>>(), vec!["view", "cart"]);
        assert_eq!(chart.bars[0].width, 2 * chart.bars[1].width);
        assert_eq!(chart.bars[1].y, BAR_ROW);
        assert!(bar_chart(Vec::new(), 5).bars.is_empty());
    }

    #[test]
    fn the_line_spans_the_plot_with_a_nice_axis() {
        let chart = line_chart([("2025-01-02".to_owned(), 70), ("2025-01-01".to_owned(), 0), ("2025-01-03".to_owned(), 35)], 30);
        assert_eq!(chart.points[0].label, "2025-01-01", "oldest first");
        assert_eq!(chart.points[0].x, LINE_LEFT as f64);
        assert_eq!(chart.points[2].x, (LINE_WIDTH - LINE_RIGHT) as f64);
        assert_eq!(chart.points[0].y, (LINE_HEIGHT - LINE_BOTTOM) as f64, "zero is on the axis");
        assert_eq!(chart.y_ticks.last().unwrap().label, "100", "70 rounds up to a nice 100");
        assert_eq!(nice_ceiling(0), 1);
        assert_eq!(nice_ceiling(101), 200);
        assert_eq!(nice_ceiling(4_999), 5_000);
        assert_eq!(line_chart((0..100).map(|d| (format!("2025-01-{d:03}"), d)), 30).points.len(), 30);
    }

    #[test]
    fn a_series_keeps_its_order_and_labels() {
        let chart = series_chart(&[("23:59:55".to_owned(), 10), ("00:00:00".to_owned(), 40)]);
        assert_eq!(chart.points.iter().map(|p| p.label.as_str()).collect::<Vec<_>>(), vec!["23:59:55", "00:00:00"], "times across midnight are not sorted as text");
        assert_eq!(chart.x_ticks[0].label, "23:59:55");
        assert!(chart.points[1].y < chart.points[0].y, "the larger value is higher");
    }
}
