//! The behaviour generator: sessions of views, clicks, favourites, shares, carts, orders,
//! payments, check-ins, identifies, crashes and requests, as canonical JSON events.

use crate::catalog::{sample, zipf, Catalog, SKU_ZIPF_EXPONENT};
use crate::config::DAY_MS;
use crate::world::DemoWorld;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_distr::{Distribution, LogNormal, Zipf};
use rand_pcg::Pcg64Mcg;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::Arc;

/// Probability that a SKU view is followed by an add-to-cart.
pub const P_VIEW_CART: f64 = 0.08;
/// Probability that a cart is followed by an order.
pub const P_CART_ORDER: f64 = 0.30;
/// Probability that an order is paid.
pub const P_ORDER_PAY: f64 = 0.90;
const P_VIEW_FAVORITE: f64 = 0.03;
const P_VIEW_SHARE: f64 = 0.01;
const P_CLICK_BEFORE_VIEW: f64 = 0.45;
const P_IN_FOCUS_CATEGORY: f64 = 0.7;
const P_CHECKIN: f64 = 0.2;
const P_JITTER: f64 = 0.03;
/// Mean gap between two events of one session, which sets how many sessions run at once.
const SESSION_EVENT_GAP_MS: f64 = 20_000.0;
const USER_ZIPF_EXPONENT: f64 = 0.75;
/// User activity follows Zipf–Mandelbrot, `(rank + offset)^-s`, so the heaviest user is
/// heavy but not a tenth of all traffic.
const USER_RANK_OFFSET: usize = 100;

const SOURCES: [&str; 10] =
    ["organic", "organic", "organic", "push", "wechat_ad", "douyin_ad", "baidu_search", "share_link", "sms", "email"];
const CLICK_PAGES: [&str; 4] = ["home", "search", "list", "list"];
const SHARE_TO: [&str; 4] = ["wechat", "moments", "weibo", "link"];
const PAY_METHODS: [&str; 3] = ["wechat_pay", "alipay", "card"];
const API_PATHS: [&str; 8] =
    ["/api/feed", "/api/search", "/api/item/detail", "/api/cart", "/api/order/create", "/api/pay", "/api/user/profile", "/api/recommend"];
const STACK_HASHES: [&str; 12] = [
    "9f2c41ab", "0d77e3c1", "c3a91f02", "51be7d90", "e8041c6a", "7a6fd233", "2b9e0f54", "f0c1d8e7", "4e55a1b9", "a7d3096c", "6c18b2fd",
    "d2f7e415",
];

/// A way an event is deliberately broken; every one makes `Event::from_json` fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Malformation {
    /// Neither `user` nor `device`.
    MissingIdentity,
    /// `action` has spaces and capitals (`"View Item"`).
    ActionWithSpaces,
    /// `time` is the word `"yesterday"`.
    TimeAsWord,
    /// `context.city` is a city name instead of an id.
    CityAsString,
    /// `props` is an array.
    PropsAsArray,
    /// `time` is a year after the event window.
    FarFutureTime,
    /// An unknown top-level field.
    UnknownField,
    /// `context.version` is not semver-like.
    BadVersion,
}

impl Malformation {
    /// Every kind, in a fixed order.
    pub const ALL: [Malformation; 8] = [
        Malformation::MissingIdentity,
        Malformation::ActionWithSpaces,
        Malformation::TimeAsWord,
        Malformation::CityAsString,
        Malformation::PropsAsArray,
        Malformation::FarFutureTime,
        Malformation::UnknownField,
        Malformation::BadVersion,
    ];
}

/// Maps the fraction of events emitted so far to a time offset, following a daily cycle
/// (quiet nights, evening peak, in UTC+8).
#[derive(Debug, Clone)]
struct Clock {
    /// Cumulative share of events at the start of each hour; `hours + 1` entries.
    cumulative: Vec<f64>,
    hour: usize,
}

impl Clock {
    fn new(days: u32) -> Clock {
        const LOCAL_HOUR_WEIGHT: [f64; 24] =
            [0.5, 0.3, 0.2, 0.15, 0.15, 0.2, 0.4, 0.7, 0.9, 1.0, 1.0, 1.1, 1.2, 1.0, 0.9, 0.9, 1.0, 1.1, 1.2, 1.4, 1.6, 1.7, 1.4, 0.9];
        let hours = days.max(1) as usize * 24;
        let mut cumulative = Vec::with_capacity(hours + 1);
        let mut sum = 0.0;
        cumulative.push(0.0);
        for h in 0..hours {
            sum += LOCAL_HOUR_WEIGHT[(h + 8) % 24];
            cumulative.push(sum);
        }
        for c in &mut cumulative {
            *c /= sum;
        }
        Clock { cumulative, hour: 0 }
    }

    /// Offset in ms for `fraction` in [0, 1); fractions must not decrease between calls.
    fn offset_ms(&mut self, fraction: f64) -> i64 {
        let last = self.cumulative.len() - 2;
        while self.hour < last && self.cumulative[self.hour + 1] <= fraction {
            self.hour += 1;
        }
        let (lo, hi) = (self.cumulative[self.hour], self.cumulative[self.hour + 1]);
        let within = if hi > lo { ((fraction - lo) / (hi - lo)).clamp(0.0, 1.0) } else { 0.0 };
        (self.hour as f64 * 3_600_000.0 + within * 3_600_000.0) as i64
    }
}

#[derive(Debug, Clone, Copy)]
enum Step {
    HomeView,
    Checkin,
    Identify,
    View(u32),
    Favorite(u32),
    Share(u32),
    Cart(u32),
    Order(u32),
    Pay(u32, u64, u64),
}

#[derive(Debug)]
struct Session {
    id: String,
    user: Option<String>,
    device: String,
    platform: &'static str,
    version: String,
    channel: String,
    city: u32,
    source: &'static str,
    ip: String,
    user_agent: String,
    old_version: bool,
    focus_leaf: usize,
    page: &'static str,
    steps_left: u32,
    /// (step at which to log in, user id) for anonymous devices.
    identify: Option<(u32, String)>,
    pending: VecDeque<Step>,
    checkins: u32,
    /// The context after `city` and `page`, as escaped JSON: `,"platform":…}`.
    context_tail: String,
}

enum TargetRef {
    Sku(u32),
    Shop(u32),
    Text(&'static str, &'static str),
}

#[derive(Debug, Clone, Copy)]
enum Props {
    Empty,
    Price(u64),
    Position(u32),
    Streak(u32),
    Method(&'static str),
    ShareTo(&'static str),
    Cart { price: u64 },
    Order { order: u64, quantity: u64, amount: u64 },
    Pay { order: u64, amount: u64, method: &'static str },
    Crash { stack_hash: &'static str, os: &'static str },
    Request { latency_ms: u64, status: u16, method: &'static str },
}

struct Planned {
    action: &'static str,
    target: Option<TargetRef>,
    props: Props,
}

/// An iterator of canonical JSON events (`serde_json::Value`), deterministic in the
/// world's seed and `total_events`. Each item is accepted by `meridian_event::Event::from_json`
/// unless it is one of the deliberately malformed ones; use [`BehaviourGenerator::next_tagged`]
/// to learn which.
#[derive(Debug)]
pub struct BehaviourGenerator {
    world: Arc<DemoWorld>,
    rng: Pcg64Mcg,
    total: u64,
    emitted: u64,
    malformed: u64,
    sessions_started: u64,
    orders: u64,
    id_prefix: String,
    session_prefix: String,
    order_prefix: String,
    clock: Clock,
    slots: Vec<Option<Session>>,
    user_order: Vec<u32>,
    user_zipf: Zipf<f64>,
    anon_zipf: Zipf<f64>,
    sku_zipf: Zipf<f64>,
    shop_zipf: Zipf<f64>,
    stack_zipf: Zipf<f64>,
    /// Per leaf slot: SKU indices most popular first, and a Zipf over them.
    leaf_skus: Vec<(Vec<u32>, Zipf<f64>)>,
    /// Leaf slot of each SKU index.
    sku_leaf: Vec<u32>,
    latency: LogNormal<f64>,
    /// Scratch buffer of [`BehaviourGenerator::write_next`].
    line: Vec<u8>,
}

impl BehaviourGenerator {
    /// A generator of exactly `total_events` events over the world's event window.
    pub fn new(world: Arc<DemoWorld>, total_events: u64) -> BehaviourGenerator {
        let seed = world.config.seed;
        let mut rng = Pcg64Mcg::new(u128::from(seed) << 64 | 0xbe4a_710e);
        let catalog = &world.catalog;
        let mut user_order: Vec<u32> = (0..world.users.users.len() as u32).collect();
        user_order.shuffle(&mut rng);

        let mut leaf_slot = vec![u32::MAX; catalog.categories.len() + 1];
        let mut n_leaves = 0;
        for c in catalog.leaves() {
            leaf_slot[c.id as usize] = n_leaves;
            n_leaves += 1;
        }
        let mut sku_leaf = vec![0u32; catalog.skus.len()];
        for (i, sku) in catalog.skus.iter().enumerate() {
            let category = catalog.spu(sku.spu).map_or(0, |s| s.category);
            sku_leaf[i] = leaf_slot.get(category as usize).copied().unwrap_or(0);
        }
        let mut lists: Vec<Vec<u32>> = vec![Vec::new(); n_leaves as usize];
        for &sku in &catalog.sku_popularity {
            lists[sku_leaf[sku as usize] as usize].push(sku);
        }
        let leaf_skus = lists
            .into_iter()
            .map(|list| {
                let z = zipf(list.len(), SKU_ZIPF_EXPONENT);
                (list, z)
            })
            .collect();

        let span = world.config.span_ms() as f64;
        let gap = if total_events == 0 { span } else { span / total_events as f64 };
        let concurrency = (SESSION_EVENT_GAP_MS / gap).round().clamp(1.0, 4096.0) as usize;

        BehaviourGenerator {
            rng,
            total: total_events,
            emitted: 0,
            malformed: 0,
            sessions_started: 0,
            orders: 0,
            id_prefix: format!("ev-{seed}-"),
            session_prefix: format!("s-{seed}-"),
            order_prefix: format!("o-{seed}-"),
            clock: Clock::new(world.config.days),
            slots: (0..concurrency).map(|_| None).collect(),
            user_zipf: zipf(world.users.users.len() + USER_RANK_OFFSET, USER_ZIPF_EXPONENT),
            anon_zipf: zipf(world.users.anonymous.len(), 0.6),
            sku_zipf: zipf(catalog.skus.len(), SKU_ZIPF_EXPONENT),
            shop_zipf: zipf(catalog.shops.len(), 1.0),
            stack_zipf: zipf(STACK_HASHES.len(), 1.2),
            leaf_skus,
            sku_leaf,
            user_order,
            latency: LogNormal::new(120f64.ln(), 0.9).expect("valid log-normal"),
            line: Vec::with_capacity(1024),
            world,
        }
    }

    /// Events emitted so far.
    pub fn emitted(&self) -> u64 {
        self.emitted
    }

    /// Malformed events emitted so far.
    pub fn malformed_emitted(&self) -> u64 {
        self.malformed
    }

    /// Sessions started so far.
    pub fn sessions_started(&self) -> u64 {
        self.sessions_started
    }

    /// The next event and, when it is deliberately broken, how.
    pub fn next_tagged(&mut self) -> Option<(Value, Option<Malformation>)> {
        self.next_with(|event| serde_json::to_value(event).expect("events serialise to json"))
    }

    /// Writes the next event as one line of JSON (no newline) to `out`, without building a
    /// [`Value`]; the fast path for files. Returns `None` when the generator is exhausted,
    /// else the event's malformation, if any.
    pub fn write_next<W: std::io::Write>(&mut self, mut out: W) -> Option<std::io::Result<Option<Malformation>>> {
        let mut line = std::mem::take(&mut self.line);
        let (result, kind) = self.next_with(|event| {
            if event.malformation.is_some() {
                serde_json::to_writer(&mut out, event).map_err(std::io::Error::from)
            } else {
                line.clear();
                event.write_clean(&mut line);
                out.write_all(&line)
            }
        })?;
        self.line = line;
        Some(result.map(|()| kind))
    }

    /// Plans the next event and hands its serialisable form to `f`.
    fn next_with<R>(&mut self, f: impl FnOnce(&RawEvent<'_>) -> R) -> Option<(R, Option<Malformation>)> {
        if self.emitted >= self.total {
            return None;
        }
        let n = self.emitted;
        let slot = self.rng.gen_range(0..self.slots.len());
        let mut session = match self.slots[slot].take() {
            Some(s) => s,
            None => self.new_session(),
        };
        let planned = loop {
            match self.step(&mut session) {
                Some(p) => break p,
                None => session = self.new_session(),
            }
        };
        let fraction = (n as f64 + 0.5) / self.total as f64;
        let mut time = self.world.start_ms() + self.clock.offset_ms(fraction);
        if self.rng.gen_bool(P_JITTER) {
            time = (time - self.rng.gen_range(1..5_000)).max(self.world.start_ms());
        }
        let share = self.world.config.malformed_share;
        let malformation =
            (share > 0.0 && self.rng.gen_bool(share)).then(|| Malformation::ALL[self.rng.gen_range(0..Malformation::ALL.len())]);
        let event = RawEvent {
            id_prefix: &self.id_prefix,
            order_prefix: &self.order_prefix,
            n,
            time,
            session: &session,
            planned: &planned,
            catalog: &self.world.catalog,
            malformation,
        };
        let result = f(&event);
        self.slots[slot] = Some(session);
        self.emitted += 1;
        if malformation.is_some() {
            self.malformed += 1;
        }
        Some((result, malformation))
    }

    /// This generator as an iterator of `(event, malformation)`.
    pub fn tagged(mut self) -> impl Iterator<Item = (Value, Option<Malformation>)> {
        std::iter::from_fn(move || self.next_tagged())
    }

    fn new_session(&mut self) -> Session {
        let world = Arc::clone(&self.world);
        let rng = &mut self.rng;
        let users = &world.users;
        let anonymous = !users.anonymous.is_empty() && rng.gen_bool(world.config.anonymous_share);
        let steps = 1 + (-(rng.gen::<f64>().max(1e-12)).ln() * 10.0) as u32;
        let (user, device, platform, version, channel, city, identify) = if anonymous {
            let a = &users.anonymous[sample(&self.anon_zipf, rng)];
            let identify = match &a.identifies_as {
                Some(u) if rng.gen_bool(0.5) => Some((rng.gen_range(0..steps), u.clone())),
                _ => None,
            };
            (None, a.id.clone(), &a.platform, &a.version, &a.channel, a.city, identify)
        } else {
            let rank = loop {
                let r = sample(&self.user_zipf, rng);
                if r >= USER_RANK_OFFSET {
                    break r - USER_RANK_OFFSET;
                }
            };
            let u = &users.users[self.user_order[rank] as usize];
            let device =
                if u.devices.len() == 1 || rng.gen_bool(0.7) { &u.devices[0] } else { &u.devices[rng.gen_range(0..u.devices.len())] };
            (Some(u.id.clone()), device.clone(), &u.platform, &u.version, &u.channel, u.city, None)
        };
        let city = if rng.gen_bool(0.05) { rng.gen_range(1..=crate::users::CITIES) } else { city };
        let platform = crate::users::PLATFORMS.iter().copied().find(|p| p == platform).unwrap_or("web");
        let hash = device.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        let ip = format!("100.{}.{}.{}", 64 + (hash >> 16) % 64, (hash >> 8) & 255, (hash & 255) | 1);
        let user_agent = match platform {
            "ios" => format!("DemoShop/{version} (iPhone; iOS {}.{})", 16 + hash % 3, hash % 6),
            "android" => format!(
                "DemoShop/{version} (Linux; Android {}; {})",
                11 + hash % 4,
                ["HUAWEI", "Xiaomi", "OPPO", "vivo"][(hash % 4) as usize]
            ),
            "miniprogram" => format!("Mozilla/5.0 MicroMessenger/8.0.{} MiniProgram/{version}", 40 + hash % 12),
            _ => "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36".to_owned(),
        };
        let focus_sku = world.catalog.sku_popularity[sample(&self.sku_zipf, rng)];
        let mut pending = VecDeque::new();
        if rng.gen_bool(0.5) {
            pending.push_back(Step::HomeView);
        }
        if user.is_some() && rng.gen_bool(P_CHECKIN) {
            pending.push_back(Step::Checkin);
        }
        self.sessions_started += 1;
        let mut session = Session {
            id: format!("{}{}", self.session_prefix, self.sessions_started),
            user,
            device,
            platform,
            old_version: !version.starts_with("10.") && !version.starts_with("3."),
            version: version.clone(),
            channel: channel.clone(),
            city,
            source: SOURCES[rng.gen_range(0..SOURCES.len())],
            ip,
            user_agent,
            focus_leaf: self.sku_leaf[focus_sku as usize] as usize,
            page: "home",
            steps_left: steps,
            identify,
            pending,
            checkins: 0,
            context_tail: String::new(),
        };
        session.context_tail = context_tail(&session);
        session
    }

    fn pick_sku(&mut self, session: &mut Session) -> u32 {
        let (list, z) = &self.leaf_skus[session.focus_leaf];
        if !list.is_empty() && self.rng.gen_bool(P_IN_FOCUS_CATEGORY) {
            return list[sample(z, &mut self.rng).min(list.len() - 1)];
        }
        let sku = self.world.catalog.sku_popularity[sample(&self.sku_zipf, &mut self.rng)];
        session.focus_leaf = self.sku_leaf[sku as usize] as usize;
        sku
    }

    /// The next thing the session does, or `None` when it is over.
    fn step(&mut self, s: &mut Session) -> Option<Planned> {
        if let Some(step) = s.pending.pop_front() {
            return Some(self.follow(s, step));
        }
        if matches!(&s.identify, Some((at, _)) if *at == s.steps_left) {
            return Some(self.follow(s, Step::Identify));
        }
        if s.steps_left == 0 {
            return None;
        }
        s.steps_left -= 1;
        let r: f64 = self.rng.gen();
        let crash_p = if s.old_version { 0.003 } else { 0.0008 };
        if r < crash_p {
            s.steps_left = 0;
            s.pending.clear();
            s.identify = None;
            let os = match s.platform {
                "ios" => "ios",
                "android" => "android",
                "miniprogram" => "wechat",
                _ => "windows",
            };
            let props = Props::Crash { stack_hash: STACK_HASHES[sample(&self.stack_zipf, &mut self.rng)], os };
            return Some(Planned { action: "crash", target: Some(TargetRef::Text("page", s.page)), props });
        }
        if r < 0.08 {
            let path = API_PATHS[self.rng.gen_range(0..API_PATHS.len())];
            let latency = self.latency.sample(&mut self.rng).round().max(1.0) as u64;
            let status = match self.rng.gen::<f64>() {
                x if x < 0.006 => [500, 502, 503, 504][self.rng.gen_range(0..4)],
                x if x < 0.016 => [400, 404, 429][self.rng.gen_range(0..3)],
                _ => 200,
            };
            let method = if path.contains("create") || path == "/api/pay" { "POST" } else { "GET" };
            let props = Props::Request { latency_ms: latency, status, method };
            return Some(Planned { action: "request", target: Some(TargetRef::Text("api", path)), props });
        }
        if r < 0.13 {
            s.page = "shop";
            let shop = self.world.catalog.shop_popularity[sample(&self.shop_zipf, &mut self.rng)];
            return Some(Planned { action: "view", target: Some(TargetRef::Shop(shop)), props: Props::Empty });
        }
        let sku = self.pick_sku(s);
        if self.rng.gen_bool(P_CLICK_BEFORE_VIEW) {
            s.page = CLICK_PAGES[self.rng.gen_range(0..CLICK_PAGES.len())];
            s.pending.push_front(Step::View(sku));
            let props = Props::Position(self.rng.gen_range(1..=40));
            return Some(Planned { action: "click", target: Some(TargetRef::Sku(sku)), props });
        }
        Some(self.follow(s, Step::View(sku)))
    }

    fn follow(&mut self, s: &mut Session, step: Step) -> Planned {
        let rng = &mut self.rng;
        match step {
            Step::HomeView => {
                s.page = "home";
                Planned { action: "view", target: Some(TargetRef::Text("page", "home")), props: Props::Empty }
            }
            Step::Checkin => {
                s.page = "checkin";
                s.checkins += 1;
                let props = Props::Streak(rng.gen_range(1..=30));
                Planned { action: "checkin", target: Some(TargetRef::Text("page", "checkin")), props }
            }
            Step::Identify => {
                let user = s.identify.take().map(|(_, u)| u);
                s.user = user;
                let props = Props::Method(if rng.gen_bool(0.7) { "sms" } else { "password" });
                Planned { action: "identify", target: None, props }
            }
            Step::View(sku) => {
                s.page = "item";
                if rng.gen_bool(P_VIEW_CART) {
                    s.pending.push_back(Step::Cart(sku));
                }
                if rng.gen_bool(P_VIEW_FAVORITE) {
                    s.pending.push_back(Step::Favorite(sku));
                }
                if rng.gen_bool(P_VIEW_SHARE) {
                    s.pending.push_back(Step::Share(sku));
                }
                let props = Props::Price(self.world.catalog.skus[sku as usize].price);
                Planned { action: "view", target: Some(TargetRef::Sku(sku)), props }
            }
            Step::Favorite(sku) => Planned { action: "favorite", target: Some(TargetRef::Sku(sku)), props: Props::Empty },
            Step::Share(sku) => {
                let props = Props::ShareTo(SHARE_TO[rng.gen_range(0..SHARE_TO.len())]);
                Planned { action: "share", target: Some(TargetRef::Sku(sku)), props }
            }
            Step::Cart(sku) => {
                if rng.gen_bool(P_CART_ORDER) {
                    s.pending.push_back(Step::Order(sku));
                }
                let props = Props::Cart { price: self.world.catalog.skus[sku as usize].price };
                Planned { action: "cart", target: Some(TargetRef::Sku(sku)), props }
            }
            Step::Order(sku) => {
                s.page = "checkout";
                self.orders += 1;
                let quantity = if rng.gen_bool(0.85) { 1 } else { rng.gen_range(2..=5) };
                let amount = quantity * self.world.catalog.skus[sku as usize].price;
                if rng.gen_bool(P_ORDER_PAY) {
                    s.pending.push_back(Step::Pay(sku, self.orders, amount));
                }
                let props = Props::Order { order: self.orders, quantity, amount };
                Planned { action: "order", target: Some(TargetRef::Sku(sku)), props }
            }
            Step::Pay(sku, order, amount) => {
                s.page = "pay";
                let props = Props::Pay { order, amount, method: PAY_METHODS[rng.gen_range(0..PAY_METHODS.len())] };
                Planned { action: "pay", target: Some(TargetRef::Sku(sku)), props }
            }
        }
    }
}

/// One planned event, borrowed from the generator, serialised straight to JSON with its
/// malformation (if any) applied on the way.
struct RawEvent<'a> {
    id_prefix: &'a str,
    order_prefix: &'a str,
    n: u64,
    time: i64,
    session: &'a Session,
    planned: &'a Planned,
    catalog: &'a Catalog,
    malformation: Option<Malformation>,
}

impl Serialize for RawEvent<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let m = self.malformation;
        let s = self.session;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("id", &format_args!("{}{}", self.id_prefix, self.n))?;
        if m != Some(Malformation::MissingIdentity) {
            if let Some(user) = &s.user {
                map.serialize_entry("user", user)?;
            }
            map.serialize_entry("device", &s.device)?;
        }
        match m {
            Some(Malformation::TimeAsWord) => map.serialize_entry("time", "yesterday")?,
            Some(Malformation::FarFutureTime) => map.serialize_entry("time", &(self.time + 400 * DAY_MS))?,
            _ => map.serialize_entry("time", &self.time)?,
        }
        let action = if m == Some(Malformation::ActionWithSpaces) { "View Item" } else { self.planned.action };
        map.serialize_entry("action", action)?;
        if let Some(target) = &self.planned.target {
            map.serialize_entry("target", &TargetOut { target, catalog: self.catalog })?;
        }
        map.serialize_entry("context", &ContextOut { session: s, malformation: m })?;
        if m == Some(Malformation::PropsAsArray) {
            map.serialize_entry("props", &["oops"])?;
        } else {
            map.serialize_entry("props", &PropsOut { props: &self.planned.props, order_prefix: self.order_prefix })?;
        }
        if m == Some(Malformation::UnknownField) {
            map.serialize_entry("colour", "red")?;
        }
        map.end()
    }
}

impl RawEvent<'_> {
    /// Writes a well-formed event as JSON by hand: the fast path of
    /// [`BehaviourGenerator::write_next`]; it must produce the same object as `Serialize`.
    fn write_clean(&self, out: &mut Vec<u8>) {
        let s = self.session;
        let mut num = itoa::Buffer::new();
        out.extend_from_slice(b"{\"id\":\"");
        out.extend_from_slice(self.id_prefix.as_bytes());
        out.extend_from_slice(num.format(self.n).as_bytes());
        out.push(b'"');
        if let Some(user) = &s.user {
            out.extend_from_slice(b",\"user\":");
            json_str(out, user);
        }
        out.extend_from_slice(b",\"device\":");
        json_str(out, &s.device);
        out.extend_from_slice(b",\"time\":");
        out.extend_from_slice(num.format(self.time).as_bytes());
        out.extend_from_slice(b",\"action\":");
        json_str(out, self.planned.action);
        if let Some(target) = &self.planned.target {
            out.extend_from_slice(b",\"target\":{\"type\":");
            match *target {
                TargetRef::Sku(i) => {
                    out.extend_from_slice(b"\"sku\",\"id\":");
                    json_str(out, &self.catalog.skus[i as usize].id);
                }
                TargetRef::Shop(i) => {
                    out.extend_from_slice(b"\"shop\",\"id\":\"");
                    out.extend_from_slice(num.format(self.catalog.shops[i as usize].id).as_bytes());
                    out.push(b'"');
                }
                TargetRef::Text(kind, id) => {
                    json_str(out, kind);
                    out.extend_from_slice(b",\"id\":");
                    json_str(out, id);
                }
            }
            out.push(b'}');
        }
        out.extend_from_slice(b",\"context\":{\"city\":");
        out.extend_from_slice(num.format(s.city).as_bytes());
        out.extend_from_slice(b",\"page\":");
        json_str(out, s.page);
        out.extend_from_slice(s.context_tail.as_bytes());
        out.extend_from_slice(b",\"props\":{");
        let mut fields = Fields { out, first: true };
        match self.planned.props {
            Props::Empty => {}
            Props::Price(v) => fields.num("price", v),
            Props::Cart { price } => {
                fields.num("quantity", 1);
                fields.num("price", price);
            }
            Props::Position(v) => fields.num("position", u64::from(v)),
            Props::Streak(v) => fields.num("streak", u64::from(v)),
            Props::Method(v) => fields.text("method", v),
            Props::ShareTo(v) => fields.text("to", v),
            Props::Order { order, quantity, amount } => {
                fields.order_id(self.order_prefix, order);
                fields.num("quantity", quantity);
                fields.num("amount", amount);
            }
            Props::Pay { order, amount, method } => {
                fields.order_id(self.order_prefix, order);
                fields.num("amount", amount);
                fields.text("method", method);
            }
            Props::Crash { stack_hash, os } => {
                fields.text("stack_hash", stack_hash);
                fields.text("os", os);
            }
            Props::Request { latency_ms, status, method } => {
                fields.num("latency_ms", latency_ms);
                fields.num("status", u64::from(status));
                fields.text("method", method);
            }
        }
        out.extend_from_slice(b"}}");
    }
}

/// Writes the members of one JSON object.
struct Fields<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl Fields<'_> {
    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        json_str(self.out, key);
        self.out.push(b':');
    }

    fn num(&mut self, key: &str, value: u64) {
        self.key(key);
        self.out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    fn text(&mut self, key: &str, value: &str) {
        self.key(key);
        json_str(self.out, value);
    }

    fn order_id(&mut self, prefix: &str, order: u64) {
        self.key("order_id");
        self.out.push(b'"');
        self.out.extend_from_slice(prefix.as_bytes());
        self.out.extend_from_slice(itoa::Buffer::new().format(order).as_bytes());
        self.out.push(b'"');
    }
}

/// Appends `text` as a JSON string, escaping only when it has to.
fn json_str(out: &mut Vec<u8>, text: &str) {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        // Writing JSON into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
    }
}

/// The session's constant context fields as a JSON fragment (see `Session::context_tail`).
fn context_tail(s: &Session) -> String {
    let mut out = Vec::with_capacity(256);
    for (name, value) in [
        ("platform", s.platform),
        ("version", s.version.as_str()),
        ("channel", s.channel.as_str()),
        ("source", s.source),
        ("session", s.id.as_str()),
        ("ip", s.ip.as_str()),
        ("user_agent", s.user_agent.as_str()),
    ] {
        out.push(b',');
        json_str(&mut out, name);
        out.push(b':');
        json_str(&mut out, value);
    }
    out.push(b'}');
    String::from_utf8(out).unwrap_or_default()
}

struct TargetOut<'a> {
    target: &'a TargetRef,
    catalog: &'a Catalog,
}

impl Serialize for TargetOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        match *self.target {
            TargetRef::Sku(i) => {
                map.serialize_entry("type", "sku")?;
                map.serialize_entry("id", &self.catalog.skus[i as usize].id)?;
            }
            TargetRef::Shop(i) => {
                map.serialize_entry("type", "shop")?;
                map.serialize_entry("id", &format_args!("{}", self.catalog.shops[i as usize].id))?;
            }
            TargetRef::Text(kind, id) => {
                map.serialize_entry("type", kind)?;
                map.serialize_entry("id", id)?;
            }
        }
        map.end()
    }
}

struct ContextOut<'a> {
    session: &'a Session,
    malformation: Option<Malformation>,
}

impl Serialize for ContextOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let s = self.session;
        let mut map = serializer.serialize_map(Some(9))?;
        if self.malformation == Some(Malformation::CityAsString) {
            map.serialize_entry("city", "Shanghai")?;
        } else {
            map.serialize_entry("city", &s.city)?;
        }
        map.serialize_entry("platform", s.platform)?;
        if self.malformation == Some(Malformation::BadVersion) {
            map.serialize_entry("version", "latest")?;
        } else {
            map.serialize_entry("version", &s.version)?;
        }
        map.serialize_entry("channel", &s.channel)?;
        map.serialize_entry("page", s.page)?;
        map.serialize_entry("source", s.source)?;
        map.serialize_entry("session", &s.id)?;
        map.serialize_entry("ip", &s.ip)?;
        map.serialize_entry("user_agent", &s.user_agent)?;
        map.end()
    }
}

struct PropsOut<'a> {
    props: &'a Props,
    order_prefix: &'a str,
}

impl Serialize for PropsOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        match *self.props {
            Props::Empty => {}
            Props::Price(price) => map.serialize_entry("price", &price)?,
            Props::Position(position) => map.serialize_entry("position", &position)?,
            Props::Streak(streak) => map.serialize_entry("streak", &streak)?,
            Props::Method(method) => map.serialize_entry("method", method)?,
            Props::ShareTo(to) => map.serialize_entry("to", to)?,
            Props::Cart { price } => {
                map.serialize_entry("quantity", &1)?;
                map.serialize_entry("price", &price)?;
            }
            Props::Order { order, quantity, amount } => {
                map.serialize_entry("order_id", &format_args!("{}{}", self.order_prefix, order))?;
                map.serialize_entry("quantity", &quantity)?;
                map.serialize_entry("amount", &amount)?;
            }
            Props::Pay { order, amount, method } => {
                map.serialize_entry("order_id", &format_args!("{}{}", self.order_prefix, order))?;
                map.serialize_entry("amount", &amount)?;
                map.serialize_entry("method", method)?;
            }
            Props::Crash { stack_hash, os } => {
                map.serialize_entry("stack_hash", stack_hash)?;
                map.serialize_entry("os", os)?;
            }
            Props::Request { latency_ms, status, method } => {
                map.serialize_entry("latency_ms", &latency_ms)?;
                map.serialize_entry("status", &status)?;
                map.serialize_entry("method", method)?;
            }
        }
        map.end()
    }
}

impl Iterator for BehaviourGenerator {
    type Item = Value;

    fn next(&mut self) -> Option<Value> {
        self.next_tagged().map(|(value, _)| value)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.total - self.emitted) as usize;
        (left, Some(left))
    }
}

impl ExactSizeIterator for BehaviourGenerator {}
