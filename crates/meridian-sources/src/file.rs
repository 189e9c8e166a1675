//! `FileSource`: a directory of `*.ndjson` / `*.jsonl` files (one JSON object per line) and
//! `*.csv` files (a header line, then one row per line, each delivered as a JSON object of
//! strings), read in file-name order and tailed: lines appended later and files created
//! later are picked up by polling.
//!
//! Only complete lines (ending in `\n`) are delivered; a partial last line waits until it is
//! completed. A message's id is `<file name>:<byte offset of the line>`. The position of each
//! file (the byte offset after the last acknowledged line) is kept in a
//! [`meridian_state::KvStore`] table ([`POSITIONS_TABLE`], key `<source name>\0<file name>`,
//! value a big-endian u64) and committed when [`Source::ack`] is called, so a reopened source
//! resumes after the last acknowledged line: lines handed out but not acknowledged are read
//! again. Empty lines are skipped. A line that is not valid JSON, or a CSV row whose width
//! differs from the header's, is delivered as its raw text (the sink dead-letters it): the
//! source never stops at a bad line. A CSV row must be one line (quoted newlines are not
//! supported). Files are expected to be appended to, never rewritten: a file that shrinks
//! below its position is reported and skipped.
//!
//! Directory listing, reads and commits run in `spawn_blocking`, never on async workers.

use crate::{AckToken, Origin, Result, Source, SourceError, SourceMessage};
use bytes::Bytes;
use meridian_state::{KvStore, WriteBatch};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The state-store table of file positions.
pub const POSITIONS_TABLE: &str = "source_files";

/// What a [`FileSource`] reads.
#[derive(Debug, Clone)]
pub struct FileSourceConfig {
    /// Configured name of the source (non-empty; the key of its positions).
    pub name: String,
    /// The directory of `*.ndjson`, `*.jsonl` and `*.csv` files.
    pub dir: PathBuf,
    /// How often the directory is looked at again while there is nothing new (default 200 ms).
    pub poll_interval: Duration,
}

impl FileSourceConfig {
    /// A config with the default poll interval.
    pub fn new(name: impl Into<String>, dir: impl Into<PathBuf>) -> FileSourceConfig {
        FileSourceConfig { name: name.into(), dir: dir.into(), poll_interval: Duration::from_millis(200) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Ndjson,
    Csv,
}

fn format_of(file_name: &str) -> Option<Format> {
    if file_name.ends_with(".ndjson") || file_name.ends_with(".jsonl") {
        Some(Format::Ndjson)
    } else if file_name.ends_with(".csv") {
        Some(Format::Csv)
    } else {
        None
    }
}

#[derive(Debug, Clone, Default)]
struct FileState {
    /// Offset after the last acknowledged line (what is stored).
    acked: u64,
    /// Offset of the next line to hand out.
    read: u64,
    /// A CSV file's header, once read.
    header: Option<Arc<Vec<String>>>,
    /// Shrinking was reported already.
    shrunk: bool,
}

/// What a file source's [`AckToken`] holds.
#[derive(Debug)]
struct FileToken {
    file: Arc<str>,
    end: u64,
}

/// A directory of NDJSON and CSV files, tailed (see the module docs).
#[derive(Debug)]
pub struct FileSource {
    config: FileSourceConfig,
    store: Arc<dyn KvStore>,
    files: BTreeMap<Arc<str>, FileState>,
}

fn position_key(source: &str, file: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(source.len() + 1 + file.len());
    key.extend_from_slice(source.as_bytes());
    key.push(0);
    key.extend_from_slice(file.as_bytes());
    key
}

impl FileSource {
    /// Opens the source: checks the config and loads the stored positions of its files.
    pub async fn open(config: FileSourceConfig, store: Arc<dyn KvStore>) -> Result<FileSource> {
        let name = config.name.clone();
        if name.trim().is_empty() || name.contains('\0') {
            return Err(SourceError::config(&name, "the source name is empty (or holds a NUL byte); give the source a name such as \"orders-files\""));
        }
        if config.poll_interval.is_zero() {
            return Err(SourceError::config(&name, "poll_interval is zero; use e.g. 200 ms"));
        }
        let dir = config.dir.clone();
        let load_store = store.clone();
        let files = blocking(&config.name, move || -> Result<BTreeMap<Arc<str>, FileState>> {
            match std::fs::metadata(&dir) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => return Err(SourceError::config(&name, format!("{} is not a directory; point dir at the directory holding the *.ndjson, *.jsonl and *.csv files", dir.display()))),
                Err(e) => return Err(SourceError::config(&name, format!("directory {} cannot be read ({e}); create it or fix the source's dir", dir.display()))),
            }
            std::fs::read_dir(&dir).map_err(|e| SourceError::config(&name, format!("directory {} cannot be listed ({e}); check its permissions", dir.display())))?;
            let prefix = position_key(&name, "");
            let stored = load_store.scan_prefix(POSITIONS_TABLE, &prefix, usize::MAX).map_err(|e| SourceError::backend(&name, format!("reading the stored file positions: {e}")))?;
            let mut files = BTreeMap::new();
            for (key, value) in stored {
                let file = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                let offset = u64::from_be_bytes(value.as_slice().try_into().map_err(|_| SourceError::backend(&name, format!("stored position of {file} is not 8 bytes")))?);
                files.insert(Arc::from(file), FileState { acked: offset, read: offset, ..FileState::default() });
            }
            Ok(files)
        })
        .await?;
        Ok(FileSource { config, store, files })
    }

    /// The stored position (byte offset after the last acknowledged line) of each file
    /// that has one.
    pub fn positions(&self) -> BTreeMap<String, u64> {
        self.files.iter().filter(|(_, s)| s.acked > 0).map(|(f, s)| (f.to_string(), s.acked)).collect()
    }
}

/// Runs blocking file or store work off the async workers.
async fn blocking<T: Send + 'static>(name: &str, work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|e| SourceError::backend(name, format!("file task failed: {e}")))?
}

/// One pass over the directory: up to `max` complete lines after each file's read position.
fn scan(name: &str, dir: &Path, files: &mut BTreeMap<Arc<str>, FileState>, max: usize) -> Result<Vec<SourceMessage>> {
    let io = |what: &str, e: std::io::Error| SourceError::backend(name, format!("{what}: {e}"));
    let mut names: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(&format!("listing {}", dir.display()), e))? {
        let entry = entry.map_err(|e| io(&format!("listing {}", dir.display()), e))?;
        let Ok(file_name) = entry.file_name().into_string() else { continue };
        if format_of(&file_name).is_some() && entry.file_type().is_ok_and(|t| t.is_file()) {
            names.push(file_name);
        }
    }
    names.sort();
    let mut out = Vec::new();
    for file_name in names {
        if out.len() >= max {
            break;
        }
        let format = format_of(&file_name).expect("filtered above");
        let key: Arc<str> = match files.get_key_value(file_name.as_str()) {
            Some((k, _)) => k.clone(),
            None => Arc::from(file_name.as_str()),
        };
        let state = files.entry(key.clone()).or_default();
        let path = dir.join(&file_name);
        let len = match std::fs::metadata(&path) {
            Ok(meta) => meta.len(),
            Err(_) => continue, // removed meanwhile
        };
        if len < state.read {
            if !state.shrunk {
                tracing::warn!(source = name, "{} is shorter ({len} bytes) than its position ({}); files must only be appended to: skipping it", path.display(), state.read);
                state.shrunk = true;
            }
            continue;
        }
        if len == state.read && (format == Format::Ndjson || state.header.is_some()) {
            continue;
        }
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => return Err(io(&format!("opening {}", path.display()), e)),
        };
        let mut reader = BufReader::with_capacity(64 * 1024, file);
        let mut line = Vec::new();
        if format == Format::Csv && state.header.is_none() {
            let n = reader.read_until(b'\n', &mut line).map_err(|e| io(&format!("reading {}", path.display()), e))?;
            if n == 0 || line.last() != Some(&b'\n') {
                continue; // the header is not complete yet
            }
            let header = parse_csv_line(trim_line(&line)).unwrap_or_default();
            state.header = Some(Arc::new(header));
            state.read = state.read.max(n as u64);
        }
        reader.seek(SeekFrom::Start(state.read)).map_err(|e| io(&format!("seeking in {}", path.display()), e))?;
        let location = path.display().to_string();
        while out.len() < max {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).map_err(|e| io(&format!("reading {}", path.display()), e))?;
            if n == 0 || line.last() != Some(&b'\n') {
                break; // end of file, or a partial line still being written
            }
            let offset = state.read;
            state.read += n as u64;
            let text = trim_line(&line);
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let payload = match (format, &state.header) {
                (Format::Csv, Some(header)) => csv_payload(header, text),
                _ => Bytes::copy_from_slice(text),
            };
            out.push(SourceMessage {
                payload,
                origin: Origin { source: name.to_owned(), kind: "file", location: location.clone(), offset },
                id: format!("{file_name}:{offset}"),
                token: AckToken::new(FileToken { file: key.clone(), end: state.read }),
            });
        }
    }
    Ok(out)
}

fn trim_line(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn parse_csv_line(line: &[u8]) -> Option<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(line);
    let record = reader.records().next()?.ok()?;
    Some(record.iter().map(str::to_owned).collect())
}

/// A CSV row as a JSON object of strings keyed by the header, or the raw line when it
/// does not parse or has another width (the sink dead-letters it).
fn csv_payload(header: &[String], line: &[u8]) -> Bytes {
    match parse_csv_line(line) {
        Some(fields) if fields.len() == header.len() && !header.is_empty() => {
            let object: serde_json::Map<String, serde_json::Value> = header.iter().cloned().zip(fields.into_iter().map(serde_json::Value::String)).collect();
            Bytes::from(serde_json::to_vec(&object).expect("a map of strings serialises"))
        }
        _ => Bytes::copy_from_slice(line),
    }
}

#[async_trait::async_trait]
impl Source for FileSource {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn kind(&self) -> &'static str {
        "file"
    }

    async fn next(&mut self, max: usize, wait: Duration) -> Result<Vec<SourceMessage>> {
        let deadline = Instant::now() + wait;
        loop {
            let (name, dir) = (self.config.name.clone(), self.config.dir.clone());
            let mut files = self.files.clone();
            // The state is replaced only when the scan's future completes, so a `next`
            // dropped mid-way hands nothing out.
            let (batch, files) = blocking(&self.config.name, move || scan(&name, &dir, &mut files, max.max(1)).map(|batch| (batch, files))).await?;
            self.files = files;
            let now = Instant::now();
            if !batch.is_empty() || now >= deadline {
                return Ok(batch);
            }
            tokio::time::sleep(self.config.poll_interval.min(deadline - now)).await;
        }
    }

    async fn ack(&mut self, tokens: Vec<AckToken>) -> Result<()> {
        let mut changed: BTreeMap<Arc<str>, u64> = BTreeMap::new();
        for token in &tokens {
            let Some(t) = token.downcast_ref::<FileToken>() else {
                return Err(SourceError::backend(&self.config.name, "an ack token of another kind of source was handed to a file source"));
            };
            let end = changed.entry(t.file.clone()).or_insert(0);
            *end = (*end).max(t.end);
        }
        let mut batch = WriteBatch::new();
        for (file, end) in &changed {
            let acked = self.files.get(file).map_or(0, |s| s.acked);
            if *end > acked {
                batch.put(POSITIONS_TABLE, position_key(&self.config.name, file), end.to_be_bytes().to_vec());
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        let store = self.store.clone();
        let name = self.config.name.clone();
        blocking(&self.config.name, move || store.commit(batch).map_err(|e| SourceError::backend(&name, format!("storing file positions: {e}")))).await?;
        for (file, end) in changed {
            let state = self.files.entry(file).or_default();
            state.acked = state.acked.max(end);
        }
        Ok(())
    }

    async fn lag(&mut self) -> Option<u64> {
        None
    }

    async fn close(self: Box<Self>) -> Result<()> {
        // Positions are committed at each ack; what was handed out and not acknowledged
        // is read again by the next source opened on the same store.
        Ok(())
    }
}
