//! Errors of the listing engine, each with a stable machine-readable code.

/// Result type of this crate.
pub type Result<T, E = ListingError> = std::result::Result<T, E>;

/// What went wrong; [`ListingError::code`] is stable (the HTTP edge maps it to a status and
/// returns it as `code`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListingError {
    /// The category is not in the catalog.
    #[error("unknown category {0}")]
    UnknownCategory(u32),
    /// The attribute key is not used by any SKU.
    #[error("unknown attribute {0:?}")]
    UnknownAttribute(String),
    /// The sort is not one of the known sorts.
    #[error("unknown sort {0:?}; use one of quality, sales, price_asc, price_desc, newest, reviews")]
    UnknownSort(String),
    /// The page is beyond the last page or deeper than the page-number limit.
    #[error("page {page} is out of range: {reason}")]
    PageOutOfRange {
        /// The requested page (1-based).
        page: u32,
        /// Why (last page, or the depth limit; use a cursor to go deeper).
        reason: String,
    },
    /// The page size is zero or larger than the limit.
    #[error("page size {size} is out of range; use 1 to {max}")]
    InvalidPageSize {
        /// The requested size.
        size: u32,
        /// The largest size.
        max: u32,
    },
    /// The price range is empty or inverted.
    #[error("invalid price range {min:?}..={max:?}: the minimum is above the maximum")]
    InvalidPriceRange {
        /// Lower bound, cents.
        min: Option<u64>,
        /// Upper bound, cents.
        max: Option<u64>,
    },
    /// A filter cannot be evaluated (too many attribute keys).
    #[error("invalid filter: {0}")]
    InvalidFilter(String),
    /// The cursor is not one this engine issued, or was issued for another query.
    #[error("bad cursor: {0}")]
    BadCursor(String),
    /// A change or a pin names a SKU the engine does not hold.
    #[error("unknown sku {0}")]
    UnknownSku(u64),
    /// An item cannot be indexed (bad id, empty or inconsistent category path).
    #[error("invalid item {sku}: {reason}")]
    InvalidItem {
        /// The SKU id as given.
        sku: String,
        /// What is wrong.
        reason: String,
    },
    /// Category settings or engine settings are out of range.
    #[error("invalid settings: {field}: {message}")]
    InvalidSettings {
        /// The setting.
        field: String,
        /// What is wrong and what is accepted.
        message: String,
    },
    /// The durable catalog could not be read or written.
    #[error("catalog store: {0}")]
    Store(String),
}

impl ListingError {
    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            ListingError::UnknownCategory(_) => "unknown_category",
            ListingError::UnknownAttribute(_) => "unknown_attribute",
            ListingError::UnknownSort(_) => "unknown_sort",
            ListingError::PageOutOfRange { .. } => "page_out_of_range",
            ListingError::InvalidPageSize { .. } => "invalid_page_size",
            ListingError::InvalidPriceRange { .. } => "invalid_price_range",
            ListingError::InvalidFilter(_) => "invalid_filter",
            ListingError::BadCursor(_) => "bad_cursor",
            ListingError::UnknownSku(_) => "unknown_sku",
            ListingError::InvalidItem { .. } => "invalid_item",
            ListingError::InvalidSettings { .. } => "invalid_settings",
            ListingError::Store(_) => "store",
        }
    }

    pub(crate) fn settings(field: &str, message: impl Into<String>) -> ListingError {
        ListingError::InvalidSettings { field: field.to_owned(), message: message.into() }
    }
}
