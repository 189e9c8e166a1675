//! Dimension tables (CSV with a header row, or JSON lines) loaded fully into memory for
//! `lookup` transformers.

use crate::config::{TableConfig, TableFormat, ValueType};
use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A loaded table: column names and rows by key. A row holds one value per column,
/// `Null` where the file had none (an empty CSV cell or a missing JSON key).
pub(crate) struct Table {
    pub(crate) name: String,
    pub(crate) path: PathBuf,
    columns: Vec<String>,
    rows: HashMap<String, Box<[Value]>>,
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table").field("name", &self.name).field("path", &self.path).field("columns", &self.columns).field("rows", &self.rows.len()).finish()
    }
}

impl Table {
    /// Loads the table described by `config`, resolving a relative path against `base_dir`.
    /// Returns the table and the file's bytes (for the pipeline revision).
    pub(crate) fn load(config: &TableConfig, base_dir: &Path) -> Result<(Table, Vec<u8>)> {
        let path = if config.path.is_absolute() { config.path.clone() } else { base_dir.join(&config.path) };
        let bytes = std::fs::read(&path).map_err(|source| Error::TableIo { table: config.name.clone(), path: path.clone(), source })?;
        let format = match config.format {
            Some(f) => f,
            None => match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
                Some("csv") => TableFormat::Csv,
                Some("jsonl" | "ndjson") => TableFormat::Jsonl,
                _ => {
                    return Err(Error::TableData {
                        table: config.name.clone(),
                        path,
                        line: 1,
                        message: "cannot tell the format from the file extension; name the file .csv or .jsonl, or set format = \"csv\" | \"jsonl\"".into(),
                    })
                }
            },
        };
        let table = match format {
            TableFormat::Csv => load_csv(config, path, &bytes)?,
            TableFormat::Jsonl => load_jsonl(config, path, &bytes)?,
        };
        Ok((table, bytes))
    }

    /// Index of a column.
    pub(crate) fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// Column names, for messages.
    pub(crate) fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The row with this key.
    pub(crate) fn get(&self, key: &str) -> Option<&[Value]> {
        self.rows.get(key).map(|r| &r[..])
    }

    /// Number of rows.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }
}

fn data_error(config: &TableConfig, path: &Path, line: u64, message: String) -> Error {
    Error::TableData { table: config.name.clone(), path: path.to_owned(), line, message }
}

fn load_csv(config: &TableConfig, path: PathBuf, bytes: &[u8]) -> Result<Table> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).trim(csv::Trim::All).from_reader(bytes);
    let headers = reader.headers().map_err(|e| data_error(config, &path, csv_line(&e), format!("cannot read the header row: {e}")))?.clone();
    let columns: Vec<String> = headers.iter().map(str::to_owned).collect();
    let key_index = columns.iter().position(|c| *c == config.key).ok_or_else(|| {
        data_error(config, &path, 1, format!("the header has no key column {:?}; columns are {}; fix key = … in [[tables]]", config.key, columns.join(", ")))
    })?;
    let mut types: Vec<Option<ValueType>> = vec![None; columns.len()];
    for (name, ty) in config.columns.iter() {
        let i = columns.iter().position(|c| c == name).ok_or_else(|| {
            data_error(config, &path, 1, format!("columns names {name:?}, which is not in the header; columns are {}", columns.join(", ")))
        })?;
        types[i] = Some(*ty);
    }
    let mut rows: HashMap<String, Box<[Value]>> = HashMap::new();
    let mut first_line: HashMap<String, u64> = HashMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| data_error(config, &path, csv_line(&e), format!("bad CSV record: {e}")))?;
        let line = record.position().map_or(0, |p| p.line());
        let key = record.get(key_index).unwrap_or_default().to_owned();
        if key.is_empty() {
            return Err(data_error(config, &path, line, format!("empty key in column {:?}; every row needs a key", config.key)));
        }
        let mut row = Vec::with_capacity(columns.len());
        for (i, cell) in record.iter().enumerate() {
            let value = if cell.is_empty() {
                Value::Null
            } else {
                match types.get(i).copied().flatten() {
                    None => Value::String(cell.to_owned()),
                    Some(ty) => convert(&Value::String(cell.to_owned()), ty)
                        .map_err(|m| data_error(config, &path, line, format!("column {:?}: {m}", columns[i])))?,
                }
            };
            row.push(value);
        }
        row.resize(columns.len(), Value::Null);
        if let Some(first) = first_line.get(&key) {
            return Err(data_error(config, &path, line, format!("duplicate key {key:?} (first on line {first}); keys must be unique")));
        }
        first_line.insert(key.clone(), line);
        rows.insert(key, row.into_boxed_slice());
    }
    Ok(Table { name: config.name.clone(), path, columns, rows })
}

fn csv_line(error: &csv::Error) -> u64 {
    error.position().map_or(1, |p| p.line())
}

fn load_jsonl(config: &TableConfig, path: PathBuf, bytes: &[u8]) -> Result<Table> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()].iter().filter(|b| **b == b'\n').count() as u64 + 1;
        data_error(config, &path, line, "the file is not valid UTF-8".into())
    })?;
    let mut objects: Vec<(u64, String, Map<String, Value>)> = Vec::new();
    let mut columns: Vec<String> = Vec::new();
    let mut first_line: HashMap<String, u64> = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i as u64 + 1;
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        let object: Map<String, Value> = serde_json::from_str(raw).map_err(|e| data_error(config, &path, line, format!("not a JSON object: {e}")))?;
        let key = match object.get(&config.key) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(data_error(config, &path, line, format!("the key {:?} is missing or not a non-empty string or number", config.key))),
        };
        if let Some(first) = first_line.get(&key) {
            return Err(data_error(config, &path, line, format!("duplicate key {key:?} (first on line {first}); keys must be unique")));
        }
        first_line.insert(key.clone(), line);
        for name in object.keys() {
            if !columns.contains(name) {
                columns.push(name.clone());
            }
        }
        objects.push((line, key, object));
    }
    let mut rows = HashMap::with_capacity(objects.len());
    for (line, key, mut object) in objects {
        let mut row = Vec::with_capacity(columns.len());
        for name in &columns {
            let mut value = object.remove(name).unwrap_or(Value::Null);
            if let Some((_, ty)) = config.columns.iter().find(|(c, _)| *c == name) {
                if !value.is_null() {
                    value = convert(&value, *ty).map_err(|m| data_error(config, &path, line, format!("column {name:?}: {m}")))?;
                }
            }
            row.push(value);
        }
        rows.insert(key, row.into_boxed_slice());
    }
    Ok(Table { name: config.name.clone(), path, columns, rows })
}

/// Converts a scalar to `ty`; the error says what the value was.
pub(crate) fn convert(value: &Value, ty: ValueType) -> std::result::Result<Value, String> {
    let bad = || format!("{} is not {}", crate::path::json_kind(value), ty.describe());
    match (ty, value) {
        (ValueType::Int, Value::Number(n)) => {
            if n.is_i64() || n.is_u64() {
                Ok(value.clone())
            } else {
                match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Value::from(f as i64)),
                    _ => Err(bad()),
                }
            }
        }
        (ValueType::Int, Value::String(s)) => {
            let s = s.trim();
            if let Ok(i) = s.parse::<i64>() {
                Ok(Value::from(i))
            } else if let Ok(u) = s.parse::<u64>() {
                Ok(Value::from(u))
            } else {
                Err(bad())
            }
        }
        (ValueType::Float, Value::Number(_)) => Ok(value.clone()),
        (ValueType::Float, Value::String(s)) => match s.trim().parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Value::from(f)),
            _ => Err(bad()),
        },
        (ValueType::String, Value::String(_)) => Ok(value.clone()),
        (ValueType::String, Value::Number(n)) => Ok(Value::String(n.to_string())),
        (ValueType::String, Value::Bool(b)) => Ok(Value::String(b.to_string())),
        (ValueType::Bool, Value::Bool(_)) => Ok(value.clone()),
        (ValueType::Bool, Value::String(s)) => match s.trim() {
            "true" | "1" | "yes" => Ok(Value::Bool(true)),
            "false" | "0" | "no" => Ok(Value::Bool(false)),
            _ => Err(bad()),
        },
        (ValueType::Bool, Value::Number(n)) => match n.as_i64() {
            Some(1) => Ok(Value::Bool(true)),
            Some(0) => Ok(Value::Bool(false)),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

impl ValueType {
    fn describe(self) -> &'static str {
        match self {
            ValueType::Int => "an integer",
            ValueType::Float => "a number",
            ValueType::String => "a string or scalar",
            ValueType::Bool => "a boolean (true/false/1/0)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(path: &str, columns: &[(&str, ValueType)]) -> TableConfig {
        TableConfig { name: "sku".into(), path: path.into(), key: "sku_id".into(), format: None, columns: columns.iter().map(|(k, v)| (*k, *v)).collect() }
    }

    #[test]
    fn csv_with_types_and_empty_cells() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sku.csv"), "sku_id,spu,star\n1001,s1,4.5\n1002,,3\n").unwrap();
        let (table, _) = Table::load(&config("sku.csv", &[("star", ValueType::Float)]), dir.path()).unwrap();
        assert_eq!(table.len(), 2);
        let row = table.get("1001").unwrap();
        assert_eq!(row[table.column("spu").unwrap()], json!("s1"));
        assert_eq!(row[table.column("star").unwrap()], json!(4.5));
        assert_eq!(table.get("1002").unwrap()[1], Value::Null);
    }

    #[test]
    fn csv_errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sku.csv"), "sku_id,star\n1,2\n2,x\n").unwrap();
        let err = Table::load(&config("sku.csv", &[("star", ValueType::Float)]), dir.path()).unwrap_err().to_string();
        assert!(err.contains("sku.csv line 3") && err.contains("\"star\""), "{err}");
        std::fs::write(dir.path().join("sku.csv"), "sku_id,star\n1,2\n1,3\n").unwrap();
        let err = Table::load(&config("sku.csv", &[]), dir.path()).unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("duplicate key \"1\" (first on line 2)"), "{err}");
        std::fs::write(dir.path().join("sku.csv"), "id,star\n1,2\n").unwrap();
        let err = Table::load(&config("sku.csv", &[]), dir.path()).unwrap_err().to_string();
        assert!(err.contains("no key column \"sku_id\"; columns are id, star"), "{err}");
        let err = Table::load(&config("nope.csv", &[]), dir.path()).unwrap_err().to_string();
        assert!(err.contains("cannot read") && err.contains("nope.csv"), "{err}");
    }

    #[test]
    fn jsonl_rows_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sku.jsonl"), "{\"sku_id\": 1001, \"spu\": \"s1\"}\n\n{\"sku_id\": \"1002\", \"brand\": \"b\"}\n").unwrap();
        let (table, _) = Table::load(&config("sku.jsonl", &[]), dir.path()).unwrap();
        assert_eq!(table.columns(), ["sku_id", "spu", "brand"]);
        assert_eq!(table.get("1001").unwrap()[1], json!("s1"));
        assert_eq!(table.get("1002").unwrap()[1], Value::Null);
        std::fs::write(dir.path().join("sku.jsonl"), "{\"sku_id\": 1}\n[1]\n").unwrap();
        let err = Table::load(&config("sku.jsonl", &[]), dir.path()).unwrap_err().to_string();
        assert!(err.contains("sku.jsonl line 2: not a JSON object"), "{err}");
    }
}
