//! The product catalog: a three-level category tree, brands, shops, SPUs and SKUs, with
//! Zipf-distributed popularity.

use crate::config::{DemoConfig, DAY_MS};
use crate::error::Result;
use crate::names;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_distr::{Distribution, LogNormal, Zipf};
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

/// Zipf exponent of SKU popularity.
pub const SKU_ZIPF_EXPONENT: f64 = 1.0;
/// Zipf exponent of shop popularity.
pub const SHOP_ZIPF_EXPONENT: f64 = 1.0;
/// First numeric SKU id.
pub const FIRST_SKU_ID: u64 = 100_000_001;

/// One node of the category tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    /// Category id.
    pub id: u32,
    /// Parent category, `None` at the top level.
    pub parent: Option<u32>,
    /// Display name.
    pub name: String,
    /// Names from the top level down, joined with `/`.
    pub path: String,
    /// 1 (top), 2 or 3 (leaf).
    pub level: u8,
}

/// A brand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Brand {
    /// Brand id.
    pub id: u32,
    /// Display name.
    pub name: String,
}

/// A shop selling SPUs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shop {
    /// Shop id.
    pub id: u32,
    /// Display name.
    pub name: String,
    /// Rating, 1..=5.
    pub star: u8,
    /// Main (leaf) category.
    pub category: u32,
}

/// A product (standard product unit), sold as one or more SKUs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spu {
    /// SPU id.
    pub id: u32,
    /// Display name.
    pub name: String,
    /// Leaf category.
    pub category: u32,
    /// Brand id.
    pub brand: u32,
    /// Shop id.
    pub shop: u32,
}

/// A sellable variant of an SPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sku {
    /// SKU id, a numeric string.
    pub id: String,
    /// SPU id.
    pub spu: u32,
    /// Display name (SPU name plus variant).
    pub name: String,
    /// Image URL.
    pub image: String,
    /// Price in cents.
    pub price: u64,
    /// Units in stock.
    pub stock: u32,
    /// Whether the SKU is on sale.
    pub on_shelf: bool,
    /// Variant attributes (color, size, storage…).
    pub attributes: BTreeMap<String, String>,
    /// Launch time, epoch ms.
    pub launch_time: i64,
}

/// The whole catalog. Popularity orders are part of it so the behaviour generator and
/// tests agree on which SKUs and shops are hot.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Catalog {
    /// Category tree, parents before children.
    pub categories: Vec<Category>,
    /// Brands.
    pub brands: Vec<Brand>,
    /// Shops.
    pub shops: Vec<Shop>,
    /// SPUs.
    pub spus: Vec<Spu>,
    /// SKUs, grouped by SPU.
    pub skus: Vec<Sku>,
    /// SKU indices (into `skus`), most popular first.
    pub sku_popularity: Vec<u32>,
    /// Shop indices (into `shops`), most popular first.
    pub shop_popularity: Vec<u32>,
    #[serde(skip)]
    index: OnceLock<HashMap<String, u32>>,
}

const ATTRIBUTE_SCHEMES: [(&str, &[&str]); 4] = [
    ("storage", &["64GB", "128GB", "256GB", "512GB", "1TB"]),
    ("size", &["XS", "S", "M", "L", "XL", "XXL"]),
    ("weight", &["250g", "500g", "1kg", "2kg", "5kg"]),
    ("pack", &["1 pc", "2 pcs", "3 pcs", "6 pcs", "12 pcs"]),
];
const COLORS: [&str; 8] = ["black", "white", "silver", "blue", "red", "green", "gold", "pink"];

impl Catalog {
    /// The SKUs as the product catalog's records (what `skus.jsonl` holds).
    pub fn sku_records(&self) -> Vec<meridian_catalog::SkuRecord> {
        self.skus
            .iter()
            .map(|sku| meridian_catalog::SkuRecord {
                id: sku.id.clone(),
                spu: u64::from(sku.spu),
                name: sku.name.clone(),
                image: sku.image.clone(),
                price: sku.price,
                stock: sku.stock,
                on_shelf: sku.on_shelf,
                attributes: sku.attributes.clone(),
                launch_time: sku.launch_time,
            })
            .collect()
    }

    /// Builds the catalog of `config` (deterministic in `config.seed`).
    pub fn generate(config: &DemoConfig) -> Result<Catalog> {
        config.validate()?;
        let mut rng = Pcg64Mcg::new(u128::from(config.seed) << 64 | 0xca7a_1065);
        let start = config.start_time_ms.unwrap_or(1_763_683_200_000);

        let categories = category_tree(config.categories);
        let leaves: Vec<u32> = categories.iter().filter(|c| c.level == 3).map(|c| c.id).collect();
        let top_of = |leaf: u32| -> u32 {
            let mut id = leaf;
            while let Some(parent) = categories[(id - 1) as usize].parent {
                id = parent;
            }
            id
        };

        let brands: Vec<Brand> = (0..config.brands).map(|i| Brand { id: i as u32 + 1, name: names::brand_name(&mut rng, i) }).collect();

        let shops: Vec<Shop> = (0..config.shops)
            .map(|i| {
                let star = *[1u8, 2, 3, 3, 4, 4, 4, 5, 5, 5].choose(&mut rng).unwrap_or(&4);
                let category = leaves[rng.gen_range(0..leaves.len())];
                let name = if i % 3 == 0 {
                    format!("{} Official Store", brands[i % brands.len()].name)
                } else {
                    format!("{} {}", names::brand_name(&mut rng, i + 7919), ["Store", "Shop", "Mall", "Outlet", "Select"][i % 5])
                };
                Shop { id: i as u32 + 1, name, star, category }
            })
            .collect();
        let mut shop_popularity: Vec<u32> = (0..shops.len() as u32).collect();
        shop_popularity.shuffle(&mut rng);

        // Leaf categories are themselves Zipf-popular; shops by main category.
        let mut leaf_order = leaves.clone();
        leaf_order.shuffle(&mut rng);
        let leaf_zipf = zipf(leaf_order.len(), 0.8);
        let shop_zipf = zipf(shops.len(), SHOP_ZIPF_EXPONENT);
        let brand_zipf = zipf(brands.len(), 0.9);
        let mut shops_by_leaf: HashMap<u32, Vec<u32>> = HashMap::new();
        for (i, shop) in shops.iter().enumerate() {
            shops_by_leaf.entry(shop.category).or_default().push(i as u32);
        }
        let base_price = LogNormal::new(4.5, 1.1).map_err(|e| crate::DemoError::InvalidConfig(e.to_string()))?;

        let mut spus = Vec::with_capacity(config.spus);
        let mut skus = Vec::with_capacity(config.spus * (*config.skus_per_spu.end() as usize));
        for i in 0..config.spus {
            let leaf = leaf_order[sample(&leaf_zipf, &mut rng)];
            let shop = match shops_by_leaf.get(&leaf) {
                Some(local) if rng.gen_bool(0.6) => local[rng.gen_range(0..local.len())],
                _ => shop_popularity[sample(&shop_zipf, &mut rng)],
            };
            let brand = sample(&brand_zipf, &mut rng) as u32;
            let leaf_name = &categories[(leaf - 1) as usize].name;
            let spu = Spu {
                id: i as u32 + 1,
                name: format!("{} {} {}", brands[brand as usize].name, leaf_name, names::model_name(&mut rng)),
                category: leaf,
                brand: brand + 1,
                shop: shops[shop as usize].id,
            };
            let scheme = &ATTRIBUTE_SCHEMES[(top_of(leaf) as usize) % ATTRIBUTE_SCHEMES.len()];
            let base: f64 = base_price.sample(&mut rng);
            let launch_time = start - rng.gen_range(0..730) * DAY_MS - rng.gen_range(0..DAY_MS);
            let color = COLORS[rng.gen_range(0..COLORS.len())];
            let variants = rng.gen_range(config.skus_per_spu.clone());
            let first_variant = rng.gen_range(0..scheme.1.len());
            for v in 0..variants as usize {
                let value = scheme.1[(first_variant + v) % scheme.1.len()];
                let id = FIRST_SKU_ID + skus.len() as u64;
                let mut attributes = BTreeMap::new();
                attributes.insert("color".to_owned(), color.to_owned());
                attributes.insert(scheme.0.to_owned(), value.to_owned());
                let price = ((base * (1.0 + 0.25 * v as f64)).round() as u64).max(1) * 100 - 1;
                let stock = if rng.gen_bool(0.05) { 0 } else { rng.gen_range(1..2_000) };
                skus.push(Sku {
                    id: id.to_string(),
                    spu: spu.id,
                    name: format!("{} {} {}", spu.name, color, value),
                    image: format!("https://img.example/sku/{id}.jpg"),
                    price,
                    stock,
                    on_shelf: rng.gen_bool(0.97),
                    attributes,
                    launch_time,
                });
            }
            spus.push(spu);
        }
        let mut sku_popularity: Vec<u32> = (0..skus.len() as u32).collect();
        sku_popularity.shuffle(&mut rng);
        Ok(Catalog { categories, brands, shops, spus, skus, sku_popularity, shop_popularity, index: OnceLock::new() })
    }

    /// The SKU with this id.
    pub fn sku(&self, id: &str) -> Option<&Sku> {
        let index = self.index.get_or_init(|| self.skus.iter().enumerate().map(|(i, s)| (s.id.clone(), i as u32)).collect());
        index.get(id).map(|&i| &self.skus[i as usize])
    }

    /// The SPU with this id.
    pub fn spu(&self, id: u32) -> Option<&Spu> {
        self.spus.get((id as usize).wrapping_sub(1)).filter(|s| s.id == id)
    }

    /// The shop with this id.
    pub fn shop(&self, id: u32) -> Option<&Shop> {
        self.shops.get((id as usize).wrapping_sub(1)).filter(|s| s.id == id)
    }

    /// The category with this id.
    pub fn category(&self, id: u32) -> Option<&Category> {
        self.categories.get((id as usize).wrapping_sub(1)).filter(|c| c.id == id)
    }

    /// The leaf categories.
    pub fn leaves(&self) -> impl Iterator<Item = &Category> {
        self.categories.iter().filter(|c| c.level == 3)
    }
}

pub(crate) fn zipf(n: usize, s: f64) -> Zipf<f64> {
    // n >= 1 and s >= 0 are guaranteed by the callers; fall back to a one-element set.
    Zipf::new(n.max(1) as u64, s).unwrap_or_else(|_| Zipf::new(1, 1.0).expect("zipf over one element"))
}

/// A zero-based rank drawn from `dist`.
#[inline]
pub(crate) fn sample(dist: &Zipf<f64>, rng: &mut Pcg64Mcg) -> usize {
    (dist.sample(rng) as usize).max(1) - 1
}

/// A three-level tree with `leaves` leaves; ids are 1-based positions in the result.
fn category_tree(leaves: usize) -> Vec<Category> {
    let n_top = ((leaves as f64).cbrt().round() as usize).clamp(1, leaves);
    let n_mid = ((leaves as f64).powf(2.0 / 3.0).round() as usize).clamp(n_top, leaves);
    let mut out: Vec<Category> = Vec::with_capacity(n_top + n_mid + leaves);
    for t in 0..n_top {
        let name = names::pick(names::TOP_CATEGORIES, t);
        out.push(Category { id: t as u32 + 1, parent: None, path: name.clone(), name, level: 1 });
    }
    for m in 0..n_mid {
        let parent = (m % n_top) as u32 + 1;
        let name = names::pick(names::MID_CATEGORIES, m);
        let path = format!("{}/{}", out[parent as usize - 1].path, name);
        out.push(Category { id: out.len() as u32 + 1, parent: Some(parent), name, path, level: 2 });
    }
    for l in 0..leaves {
        let parent = (n_top + l % n_mid) as u32 + 1;
        let name = names::pick(names::LEAF_CATEGORIES, l);
        let path = format!("{}/{}", out[parent as usize - 1].path, name);
        out.push(Category { id: out.len() as u32 + 1, parent: Some(parent), name, path, level: 3 });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_has_three_levels_and_requested_leaves() {
        let catalog = Catalog::generate(&DemoConfig::small()).unwrap();
        assert_eq!(catalog.leaves().count(), DemoConfig::small().categories);
        for c in &catalog.categories {
            match c.parent {
                None => assert_eq!(c.level, 1),
                Some(p) => {
                    let parent = catalog.category(p).unwrap();
                    assert_eq!(parent.level + 1, c.level);
                    assert!(c.path.starts_with(&parent.path), "{} / {}", c.path, parent.path);
                }
            }
        }
        let default_tree = category_tree(60);
        assert_eq!(default_tree.iter().filter(|c| c.level == 3).count(), 60);
        assert!(default_tree.iter().filter(|c| c.level == 1).count() >= 3);
    }

    #[test]
    fn references_resolve_and_lookup_works() {
        let catalog = Catalog::generate(&DemoConfig::small()).unwrap();
        assert_eq!(catalog.spus.len(), 500);
        assert!(catalog.skus.len() >= 500 && catalog.skus.len() <= 2000);
        for spu in &catalog.spus {
            assert_eq!(catalog.category(spu.category).unwrap().level, 3);
            assert!(catalog.shop(spu.shop).is_some());
            assert!(spu.brand >= 1 && spu.brand as usize <= catalog.brands.len());
        }
        for sku in &catalog.skus {
            assert!(sku.id.bytes().all(|b| b.is_ascii_digit()));
            assert_eq!(catalog.sku(&sku.id).unwrap().id, sku.id);
            assert!(catalog.spu(sku.spu).is_some());
            assert_eq!(sku.image, format!("https://img.example/sku/{}.jpg", sku.id));
            assert!(sku.price > 0);
            assert!(sku.attributes.contains_key("color"));
        }
        for shop in &catalog.shops {
            assert!((1..=5).contains(&shop.star));
        }
        assert!(catalog.sku("nope").is_none());
        let mut order = catalog.sku_popularity.clone();
        order.sort_unstable();
        assert_eq!(order, (0..catalog.skus.len() as u32).collect::<Vec<_>>());
    }
}
