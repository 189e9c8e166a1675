//! Word lists and name makers for the catalog.

use rand::Rng;
use rand_pcg::Pcg64Mcg;

pub(crate) const TOP_CATEGORIES: &[&str] =
    &["Electronics", "Fashion", "Home", "Food", "Beauty", "Sports", "Books", "Toys", "Auto", "Health", "Pets", "Garden"];
pub(crate) const MID_CATEGORIES: &[&str] = &[
    "Phones",
    "Menswear",
    "Kitchen",
    "Snacks",
    "Skincare",
    "Outdoor",
    "Fiction",
    "Building",
    "Car Care",
    "Vitamins",
    "Dog",
    "Tools",
    "Computers",
    "Womenswear",
    "Bedding",
    "Drinks",
    "Makeup",
    "Fitness",
    "Children",
    "Dolls",
    "Audio",
    "Shoes",
    "Lighting",
    "Fresh",
    "Fragrance",
    "Cycling",
    "Comics",
    "Puzzles",
    "Cameras",
    "Bags",
];
pub(crate) const LEAF_CATEGORIES: &[&str] = &[
    "Smartphones",
    "T-Shirts",
    "Cookware",
    "Chips",
    "Face Cream",
    "Tents",
    "Novels",
    "Blocks",
    "Wax",
    "Vitamin C",
    "Dog Food",
    "Drills",
    "Laptops",
    "Dresses",
    "Pillows",
    "Tea",
    "Lipstick",
    "Yoga Mats",
    "Picture Books",
    "Plush",
    "Headphones",
    "Sneakers",
    "Desk Lamps",
    "Fruit",
    "Perfume",
    "Helmets",
    "Manga",
    "Jigsaws",
    "Mirrorless",
    "Backpacks",
    "Tablets",
    "Jeans",
    "Knives",
    "Chocolate",
    "Serum",
    "Sleeping Bags",
    "Poetry",
    "Robots",
    "Seat Covers",
    "Fish Oil",
    "Cat Litter",
    "Saws",
    "Monitors",
    "Skirts",
    "Duvets",
    "Coffee",
    "Mascara",
    "Dumbbells",
    "Textbooks",
    "Board Games",
    "Speakers",
    "Boots",
    "Bulbs",
    "Vegetables",
    "Body Lotion",
    "Bike Lights",
    "Art Books",
    "3D Puzzles",
    "Lenses",
    "Wallets",
];
const SYLLABLES: &[&str] = &[
    "no", "va", "ri", "ka", "lu", "mi", "zen", "tor", "bel", "qi", "xan", "do", "ra", "fi", "sol", "mar", "ven", "ta", "pix", "ori", "lex",
    "um", "sa", "ko", "ne", "vi", "tek", "ly", "ar", "mo",
];

/// `list[i]`, with a numeric suffix once the list is exhausted.
pub(crate) fn pick(list: &[&str], i: usize) -> String {
    let round = i / list.len();
    let word = list[i % list.len()];
    if round == 0 {
        word.to_owned()
    } else {
        format!("{word} {}", round + 1)
    }
}

/// A pronounceable capitalised brand-like name.
pub(crate) fn brand_name(rng: &mut Pcg64Mcg, salt: usize) -> String {
    let parts = 2 + (salt + rng.gen_range(0..2)) % 2;
    let mut name = String::new();
    for _ in 0..parts {
        name.push_str(SYLLABLES[rng.gen_range(0..SYLLABLES.len())]);
    }
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => name,
    }
}

/// A model designation such as `X7 Pro`.
pub(crate) fn model_name(rng: &mut Pcg64Mcg) -> String {
    const LETTERS: &[u8] = b"ACEGKMRSTXZ";
    const SUFFIX: &[&str] = &["", "", " Pro", " Max", " Lite", " Plus", " Mini", " Air"];
    format!("{}{}{}", LETTERS[rng.gen_range(0..LETTERS.len())] as char, rng.gen_range(1..100), SUFFIX[rng.gen_range(0..SUFFIX.len())])
}
