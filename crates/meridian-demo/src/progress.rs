//! Progress bars shared by the writer and the sender.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `len` events (a spinner when unknown), hidden unless `show`.
pub(crate) fn bar(show: bool, len: Option<u64>, what: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let (bar, template) = match len {
        Some(len) => {
            (ProgressBar::new(len), "{spinner} {msg} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ({per_sec}, eta {eta})")
        }
        None => (ProgressBar::new_spinner(), "{spinner} {msg} [{elapsed_precise}] {human_pos} ({per_sec})"),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    bar
}
