//! Users and devices: home city, platform, app version, install channel.

use crate::catalog::{sample, zipf};
use crate::config::DemoConfig;
use crate::error::Result;
use rand::distributions::{Distribution, WeightedIndex};
use rand::Rng;
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};

/// Number of distinct city ids (1..=CITIES; 1 is the largest city).
pub const CITIES: u32 = 360;
/// Platforms, in the order of [`PLATFORM_WEIGHTS`].
pub const PLATFORMS: [&str; 4] = ["android", "ios", "miniprogram", "web"];
const PLATFORM_WEIGHTS: [f64; 4] = [0.45, 0.30, 0.15, 0.10];
const APP_VERSIONS: &[(&str, f64)] = &[
    ("10.4.0", 0.30),
    ("10.3.2", 0.22),
    ("10.3.1", 0.08),
    ("10.2.1", 0.12),
    ("10.1.0", 0.08),
    ("10.0.3", 0.06),
    ("9.8.0", 0.05),
    ("9.5.2", 0.04),
    ("9.0.0", 0.03),
    ("8.6.1", 0.02),
];
const WEB_VERSIONS: &[(&str, f64)] = &[("10.4.0", 0.9), ("10.3.2", 0.1)];
const MINI_VERSIONS: &[(&str, f64)] = &[("3.2.0", 0.5), ("3.1.4", 0.3), ("3.0.0", 0.15), ("2.9.9", 0.05)];
const ANDROID_CHANNELS: &[(&str, f64)] =
    &[("huawei", 0.25), ("xiaomi", 0.20), ("oppo", 0.15), ("vivo", 0.12), ("official", 0.10), ("tencent", 0.10), ("googleplay", 0.08)];
const IOS_CHANNELS: &[(&str, f64)] = &[("appstore", 0.95), ("testflight", 0.05)];
const WEB_CHANNELS: &[(&str, f64)] = &[("official", 0.7), ("seo", 0.3)];
const MINI_CHANNELS: &[(&str, f64)] = &[("wechat", 0.8), ("alipay", 0.2)];

/// A registered user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// User id, `u<N>`.
    pub id: String,
    /// Home city id.
    pub city: u32,
    /// Main platform.
    pub platform: String,
    /// Installed app version.
    pub version: String,
    /// Install channel.
    pub channel: String,
    /// Device ids, main device first.
    pub devices: Vec<String>,
}

/// A device used without logging in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnonymousDevice {
    /// Device id.
    pub id: String,
    /// City id.
    pub city: u32,
    /// Platform.
    pub platform: String,
    /// App version.
    pub version: String,
    /// Install channel.
    pub channel: String,
    /// The user this device logs in as at some point (an `identify` event), if any.
    pub identifies_as: Option<String>,
}

/// All users and anonymous devices of the demo world.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Users {
    /// Registered users; `users[i].id == format!("u{}", i + 1)`.
    pub users: Vec<User>,
    /// Anonymous devices.
    pub anonymous: Vec<AnonymousDevice>,
}

struct Picker {
    city: rand_distr::Zipf<f64>,
    platform: WeightedIndex<f64>,
    versions: [WeightedIndex<f64>; 4],
    channels: [WeightedIndex<f64>; 4],
}

fn weighted(items: &[(&str, f64)]) -> WeightedIndex<f64> {
    WeightedIndex::new(items.iter().map(|i| i.1)).expect("static weights are positive")
}

fn version_list(platform: usize) -> &'static [(&'static str, f64)] {
    match platform {
        0 | 1 => APP_VERSIONS,
        2 => MINI_VERSIONS,
        _ => WEB_VERSIONS,
    }
}

fn channel_list(platform: usize) -> &'static [(&'static str, f64)] {
    match platform {
        0 => ANDROID_CHANNELS,
        1 => IOS_CHANNELS,
        2 => MINI_CHANNELS,
        _ => WEB_CHANNELS,
    }
}

impl Picker {
    fn new() -> Picker {
        Picker {
            city: zipf(CITIES as usize, 1.0),
            platform: WeightedIndex::new(PLATFORM_WEIGHTS).expect("static weights are positive"),
            versions: [0, 1, 2, 3].map(|p| weighted(version_list(p))),
            channels: [0, 1, 2, 3].map(|p| weighted(channel_list(p))),
        }
    }

    /// (city, platform, version, channel)
    fn profile(&self, rng: &mut Pcg64Mcg) -> (u32, String, String, String) {
        let city = sample(&self.city, rng) as u32 + 1;
        let p = self.platform.sample(rng);
        let version = version_list(p)[self.versions[p].sample(rng)].0;
        let channel = channel_list(p)[self.channels[p].sample(rng)].0;
        (city, PLATFORMS[p].to_owned(), version.to_owned(), channel.to_owned())
    }
}

impl Users {
    /// Builds the users of `config` (deterministic in `config.seed`).
    pub fn generate(config: &DemoConfig) -> Result<Users> {
        config.validate()?;
        let mut rng = Pcg64Mcg::new(u128::from(config.seed) << 64 | 0x05e2_5eed);
        let picker = Picker::new();
        let mut next_device = 1u64;
        let mut users = Vec::with_capacity(config.users);
        for i in 0..config.users {
            let (city, platform, version, channel) = picker.profile(&mut rng);
            let n_devices = if config.devices_per_user == 1 || rng.gen_bool(0.7) { 1 } else { rng.gen_range(2..=config.devices_per_user) };
            let devices = (0..n_devices)
                .map(|_| {
                    next_device += 1;
                    format!("d{}", next_device - 1)
                })
                .collect();
            users.push(User { id: format!("u{}", i + 1), city, platform, version, channel, devices });
        }
        let share = config.anonymous_share;
        let n_anonymous = ((config.users as f64) * share / (1.0 - share)).ceil() as usize;
        let anonymous = (0..n_anonymous)
            .map(|_| {
                let (city, platform, version, channel) = picker.profile(&mut rng);
                let identifies_as = rng.gen_bool(0.3).then(|| format!("u{}", rng.gen_range(1..=config.users)));
                next_device += 1;
                AnonymousDevice { id: format!("d{}", next_device - 1), city, platform, version, channel, identifies_as }
            })
            .collect();
        Ok(Users { users, anonymous })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_have_profiles_and_skewed_cities() {
        let config = DemoConfig::small();
        let users = Users::generate(&config).unwrap();
        assert_eq!(users.users.len(), config.users);
        assert!(!users.anonymous.is_empty());
        let mut devices = std::collections::HashSet::new();
        for (i, user) in users.users.iter().enumerate() {
            assert_eq!(user.id, format!("u{}", i + 1));
            assert!(PLATFORMS.contains(&user.platform.as_str()));
            assert!(user.version.starts_with(|c: char| c.is_ascii_digit()));
            assert!(!user.devices.is_empty() && user.devices.len() <= config.devices_per_user as usize);
            for d in &user.devices {
                assert!(devices.insert(d.clone()), "device {d} reused");
            }
        }
        for anon in &users.anonymous {
            assert!(devices.insert(anon.id.clone()));
        }
        let top_cities = users.users.iter().filter(|u| u.city <= 10).count();
        assert!(top_cities * 5 > users.users.len(), "the ten largest cities should hold > 20% of users, got {top_cities}");
        let old = users.users.iter().filter(|u| u.version.starts_with('9') || u.version.starts_with('8')).count();
        assert!(old > 0 && old < users.users.len() / 3, "old versions: {old}");
    }
}
