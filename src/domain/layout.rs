//! Cabinet configuration validation: doors, lanes, channels and stock. A configuration with any
//! problem is refused whole, with every problem listed.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::domain::validation::{FieldError, FieldErrors};

/// Highest door number (controllers have a handful of lock outputs).
pub const MAX_DOOR: u32 = 64;

/// Most lanes one door may have.
pub const MAX_LANES_PER_DOOR: usize = 64;
/// Largest lane capacity, in units.
pub const MAX_CAPACITY: u32 = 1000;
/// Longest lane code, in characters.
pub const MAX_LANE_CODE_CHARS: usize = 16;
/// Longest lane name, in characters.
pub const MAX_LANE_NAME_CHARS: usize = 60;
/// Longest address, in characters.
pub const MAX_ADDRESS_CHARS: usize = 200;
/// The farthest latitude a map index holds: Redis GEO (and our memory adapter with it) covers the
/// Web-Mercator square only, so a cabinet beyond it could not be found nearby.
pub const MAX_LATITUDE: f64 = 85.05112878;

/// A cabinet's configuration as submitted. Besides each field's own limits: door numbers, lane
/// codes and channels are each used once; a lane's channel is below its cabinet type's
/// `sensor_channels`; `threshold` and `stock` are at most `capacity`; `product_id` names an active
/// product, and a lane without one holds no stock; `lat` and `lng` come together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LayoutInput {
    #[serde(default)]
    #[schema(max_length = 200)]
    pub address: Option<String>,
    /// GCJ-02 latitude, within ±85.05112878 (the Web-Mercator square map indexes cover).
    #[serde(default)]
    #[schema(minimum = -85.05112878, maximum = 85.05112878)]
    pub lat: Option<f64>,
    /// GCJ-02 longitude.
    #[serde(default)]
    #[schema(minimum = -180.0, maximum = 180.0)]
    pub lng: Option<f64>,
    #[schema(min_items = 1, max_items = 64)]
    pub doors: Vec<DoorInput>,
}

/// One door and the lanes behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DoorInput {
    /// Door number, from 1.
    #[schema(minimum = 1, maximum = 64)]
    pub door: u32,
    #[schema(min_items = 1, max_items = 64)]
    pub lanes: Vec<LaneInput>,
}

/// One lane: a row of one product on one load-cell channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LaneInput {
    /// Short code printed on the lane, e.g. `A2`.
    #[schema(pattern = "^[A-Za-z0-9-]{1,16}$")]
    pub code: String,
    #[serde(default)]
    #[schema(max_length = 60)]
    pub name: String,
    /// Load-cell channel of the cabinet's sensor board, from 0.
    #[schema(maximum = 255)]
    pub channel: u32,
    /// How many units fit.
    #[schema(minimum = 1, maximum = 1000)]
    pub capacity: u32,
    /// Restock when stock falls to this.
    #[schema(maximum = 1000)]
    pub threshold: u32,
    #[serde(default)]
    pub product_id: Option<i64>,
    #[serde(default)]
    #[schema(maximum = 1000)]
    pub stock: u32,
}

/// What the catalogue says about a product id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProductState {
    Unknown,
    Inactive,
    Active,
}

/// Checks a layout for a cabinet type with `sensor_channels` channels; `product` looks up the
/// products lanes refer to. Lists every problem.
pub fn validate(
    layout: &LayoutInput,
    sensor_channels: u32,
    product: impl Fn(i64) -> ProductState,
) -> Result<(), Vec<FieldError>> {
    let mut errors = FieldErrors::default();

    if let Some(address) = &layout.address
        && address.chars().count() > MAX_ADDRESS_CHARS
    {
        errors.push("address", "too_long", format!("address is longer than {MAX_ADDRESS_CHARS} characters"));
    }
    check_position(&mut errors, layout.lat, layout.lng);

    if layout.doors.is_empty() {
        errors.push("doors", "required", "a cabinet needs at least one door");
    }

    // First path seen for each door number, lane code and channel, to name it in duplicates.
    let mut doors_seen: HashMap<u32, String> = HashMap::new();
    let mut codes_seen: HashMap<&str, String> = HashMap::new();
    let mut channels_seen: HashMap<u32, String> = HashMap::new();

    for (d, door) in layout.doors.iter().enumerate() {
        let door_path = format!("doors[{d}]");
        if door.door == 0 || door.door > MAX_DOOR {
            errors.push(format!("{door_path}.door"), "out_of_range", format!("door numbers are 1 to {MAX_DOOR}"));
        } else if let Some(other) = doors_seen.get(&door.door) {
            errors.push(
                format!("{door_path}.door"),
                "duplicate",
                format!("door {} is already configured at {other}", door.door),
            );
        } else {
            doors_seen.insert(door.door, door_path.clone());
        }

        if door.lanes.is_empty() {
            errors.push(format!("{door_path}.lanes"), "required", "a door needs at least one lane");
        } else if door.lanes.len() > MAX_LANES_PER_DOOR {
            errors.push(
                format!("{door_path}.lanes"),
                "too_many",
                format!("a door has at most {MAX_LANES_PER_DOOR} lanes; got {}", door.lanes.len()),
            );
        }

        for (l, lane) in door.lanes.iter().enumerate() {
            let path = format!("{door_path}.lanes[{l}]");
            check_lane(&mut errors, &path, lane, sensor_channels, &product);

            // Duplicates are only looked for among well-formed values, so a bad value is
            // reported once, as bad.
            if lane_code_ok(&lane.code) {
                if let Some(other) = codes_seen.get(lane.code.as_str()) {
                    errors.push(
                        format!("{path}.code"),
                        "duplicate",
                        format!("lane code {} is already used by {other}", lane.code),
                    );
                } else {
                    codes_seen.insert(&lane.code, path.clone());
                }
            }
            if lane.channel < sensor_channels {
                if let Some(other) = channels_seen.get(&lane.channel) {
                    errors.push(
                        format!("{path}.channel"),
                        "duplicate",
                        format!("channel {} is already used by {other}", lane.channel),
                    );
                } else {
                    channels_seen.insert(lane.channel, path.clone());
                }
            }
        }
    }

    errors.finish()
}

/// The rules of one lane that do not depend on the other lanes.
fn check_lane(
    errors: &mut FieldErrors,
    path: &str,
    lane: &LaneInput,
    sensor_channels: u32,
    product: &impl Fn(i64) -> ProductState,
) {
    if !lane_code_ok(&lane.code) {
        errors.push(
            format!("{path}.code"),
            "bad_format",
            format!("lane code must be 1–{MAX_LANE_CODE_CHARS} characters of ASCII letters, digits or '-'"),
        );
    }
    if lane.name.chars().count() > MAX_LANE_NAME_CHARS {
        errors.push(
            format!("{path}.name"),
            "too_long",
            format!("lane name is longer than {MAX_LANE_NAME_CHARS} characters"),
        );
    }
    if lane.channel >= sensor_channels {
        let range = match sensor_channels {
            0 => String::new(),
            n => format!(" (0–{})", n - 1),
        };
        errors.push(
            format!("{path}.channel"),
            "out_of_range",
            format!(
                "channel {} is out of range: this cabinet type has {sensor_channels} channels{range}",
                lane.channel
            ),
        );
    }
    if lane.capacity == 0 || lane.capacity > MAX_CAPACITY {
        errors.push(
            format!("{path}.capacity"),
            "out_of_range",
            format!("capacity must be between 1 and {MAX_CAPACITY}; got {}", lane.capacity),
        );
    }
    if lane.threshold > lane.capacity {
        errors.push(
            format!("{path}.threshold"),
            "threshold_above_capacity",
            format!("restock threshold {} is above the capacity {}", lane.threshold, lane.capacity),
        );
    }
    if lane.stock > lane.capacity {
        errors.push(
            format!("{path}.stock"),
            "stock_above_capacity",
            format!("stock {} is above the capacity {}", lane.stock, lane.capacity),
        );
    }
    match lane.product_id {
        Some(id) => match product(id) {
            ProductState::Unknown => {
                errors.push(format!("{path}.product_id"), "unknown_product", format!("product {id} does not exist"))
            }
            ProductState::Inactive => errors.push(
                format!("{path}.product_id"),
                "inactive_product",
                format!("product {id} is inactive; activate it before putting it on a lane"),
            ),
            ProductState::Active => {}
        },
        // Units of nothing cannot be sold or counted by weight.
        None if lane.stock > 0 => errors.push(
            format!("{path}.stock"),
            "stock_without_product",
            "a lane without a product cannot hold stock; set the product or make the stock 0",
        ),
        None => {}
    }
}

fn lane_code_ok(code: &str) -> bool {
    (1..=MAX_LANE_CODE_CHARS).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Latitude and longitude must be in range and given together, since one without the other
/// places the cabinet nowhere.
fn check_position(errors: &mut FieldErrors, lat: Option<f64>, lng: Option<f64>) {
    if let Some(lat) = lat
        && !(-MAX_LATITUDE..=MAX_LATITUDE).contains(&lat)
    {
        errors.push("lat", "out_of_range", format!("latitude must be between -{MAX_LATITUDE} and {MAX_LATITUDE}"));
    }
    if let Some(lng) = lng
        && !(-180.0..=180.0).contains(&lng)
    {
        errors.push("lng", "out_of_range", "longitude must be between -180 and 180");
    }
    match (lat, lng) {
        (Some(_), None) => errors.push("lng", "required", "longitude is required when latitude is given"),
        (None, Some(_)) => errors.push("lat", "required", "latitude is required when longitude is given"),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CHANNELS: u32 = 32;

    fn lane(code: &str, channel: u32) -> LaneInput {
        LaneInput {
            code: code.into(),
            name: format!("lane {code}"),
            channel,
            capacity: 10,
            threshold: 2,
            product_id: Some(1),
            stock: 5,
        }
    }

    fn good() -> LayoutInput {
        LayoutInput {
            address: Some("1 Market St".into()),
            lat: Some(31.23),
            lng: Some(121.47),
            doors: vec![
                DoorInput { door: 1, lanes: vec![lane("A1", 0), lane("A2", 1), lane("A3", 2)] },
                DoorInput { door: 2, lanes: vec![lane("B1", 3), lane("B2", 4)] },
            ],
        }
    }

    /// Product 1 is active, 2 inactive, anything else unknown.
    fn catalogue(id: i64) -> ProductState {
        match id {
            1 => ProductState::Active,
            2 => ProductState::Inactive,
            _ => ProductState::Unknown,
        }
    }

    fn check(layout: &LayoutInput) -> Result<(), Vec<FieldError>> {
        validate(layout, CHANNELS, catalogue)
    }

    fn codes(layout: &LayoutInput) -> Vec<(String, &'static str)> {
        match check(layout) {
            Ok(()) => vec![],
            Err(errors) => errors.into_iter().map(|e| (e.field, e.code)).collect(),
        }
    }

    fn one(field: &str, code: &'static str) -> Vec<(String, &'static str)> {
        vec![(field.to_string(), code)]
    }

    /// `good()` with lane `l` of door `d` changed by `f`.
    fn with_lane(d: usize, l: usize, f: impl FnOnce(&mut LaneInput)) -> LayoutInput {
        let mut layout = good();
        f(&mut layout.doors[d].lanes[l]);
        layout
    }

    #[test]
    fn a_good_layout_passes() {
        assert_eq!(check(&good()), Ok(()));
        let bare = LayoutInput { address: None, lat: None, lng: None, ..good() };
        assert_eq!(check(&bare), Ok(()));
    }

    #[test]
    fn serde_defaults() {
        let layout: LayoutInput = serde_json::from_str(
            r#"{"doors":[{"door":1,"lanes":[{"code":"A1","channel":0,"capacity":5,"threshold":1}]}]}"#,
        )
        .expect("parses");
        let lane = &layout.doors[0].lanes[0];
        assert_eq!((lane.name.as_str(), lane.product_id, lane.stock), ("", None, 0));
        assert_eq!((layout.address, layout.lat, layout.lng), (None, None, None));
    }

    #[test]
    fn doors_are_required() {
        let layout = LayoutInput { doors: vec![], ..good() };
        assert_eq!(codes(&layout), one("doors", "required"));
    }

    #[test]
    fn door_numbers_start_at_one_and_are_unique() {
        let mut layout = good();
        layout.doors[0].door = 0;
        assert_eq!(codes(&layout), one("doors[0].door", "out_of_range"));

        let mut layout = good();
        layout.doors[1].door = 1;
        let errors = check(&layout).expect_err("duplicate door");
        assert_eq!(errors.len(), 1);
        assert_eq!((errors[0].field.as_str(), errors[0].code), ("doors[1].door", "duplicate"));
        assert!(errors[0].message.contains("doors[0]"), "{}", errors[0].message);
    }

    #[test]
    fn lanes_per_door_are_one_to_sixty_four() {
        let mut layout = good();
        layout.doors[1].lanes.clear();
        assert_eq!(codes(&layout), one("doors[1].lanes", "required"));

        let many = |n: u32| LayoutInput {
            address: None,
            lat: None,
            lng: None,
            doors: vec![DoorInput { door: 1, lanes: (0..n).map(|i| lane(&format!("L{i}"), i)).collect() }],
        };
        assert_eq!(validate(&many(64), 100, catalogue), Ok(()));
        let errors = validate(&many(65), 100, catalogue).expect_err("65 lanes");
        assert_eq!(
            errors.iter().map(|e| (e.field.as_str(), e.code)).collect::<Vec<_>>(),
            [("doors[0].lanes", "too_many")]
        );
    }

    #[test]
    fn lane_code_format() {
        for bad in ["", "A 1", "A_1", "Ä1", &"A".repeat(17)] {
            assert_eq!(
                codes(&with_lane(0, 1, |l| l.code = bad.into())),
                one("doors[0].lanes[1].code", "bad_format"),
                "{bad:?}"
            );
        }
        for ok in ["A-1", &"Z".repeat(16), "7"] {
            assert_eq!(codes(&with_lane(0, 1, |l| l.code = ok.into())), vec![], "{ok}");
        }
    }

    #[test]
    fn lane_codes_are_unique_across_doors() {
        let layout = with_lane(1, 1, |l| l.code = "A2".into());
        let errors = check(&layout).expect_err("duplicate code");
        assert_eq!(errors.len(), 1);
        assert_eq!((errors[0].field.as_str(), errors[0].code), ("doors[1].lanes[1].code", "duplicate"));
        assert_eq!(errors[0].message, "lane code A2 is already used by doors[0].lanes[1]");
    }

    #[test]
    fn lane_name_length() {
        assert_eq!(codes(&with_lane(0, 0, |l| l.name = "名".repeat(60))), vec![]);
        assert_eq!(codes(&with_lane(0, 0, |l| l.name = "名".repeat(61))), one("doors[0].lanes[0].name", "too_long"));
    }

    #[test]
    fn channel_must_exist_on_the_cabinet_type() {
        let layout = with_lane(0, 2, |l| l.channel = 40);
        let errors = check(&layout).expect_err("channel 40");
        assert_eq!(errors.len(), 1);
        assert_eq!((errors[0].field.as_str(), errors[0].code), ("doors[0].lanes[2].channel", "out_of_range"));
        assert_eq!(errors[0].message, "channel 40 is out of range: this cabinet type has 32 channels (0–31)");
        assert_eq!(codes(&with_lane(0, 2, |l| l.channel = 31)), vec![]);
        assert_eq!(codes(&with_lane(0, 2, |l| l.channel = 32)), one("doors[0].lanes[2].channel", "out_of_range"));
    }

    #[test]
    fn channels_are_unique_across_doors() {
        let layout = with_lane(1, 0, |l| l.channel = 1);
        let errors = check(&layout).expect_err("duplicate channel");
        assert_eq!(errors.len(), 1);
        assert_eq!((errors[0].field.as_str(), errors[0].code), ("doors[1].lanes[0].channel", "duplicate"));
        assert!(errors[0].message.contains("doors[0].lanes[1]"), "{}", errors[0].message);
    }

    #[test]
    fn capacity_range() {
        let zero = with_lane(0, 0, |l| {
            l.capacity = 0;
            l.threshold = 0;
            l.stock = 0;
        });
        assert_eq!(codes(&zero), one("doors[0].lanes[0].capacity", "out_of_range"));
        assert_eq!(codes(&with_lane(0, 0, |l| l.capacity = 1000)), vec![]);
        assert_eq!(codes(&with_lane(0, 0, |l| l.capacity = 1001)), one("doors[0].lanes[0].capacity", "out_of_range"));
    }

    #[test]
    fn threshold_and_stock_fit_the_capacity() {
        assert_eq!(codes(&with_lane(0, 0, |l| l.threshold = 10)), vec![]);
        assert_eq!(
            codes(&with_lane(0, 0, |l| l.threshold = 11)),
            one("doors[0].lanes[0].threshold", "threshold_above_capacity")
        );
        assert_eq!(codes(&with_lane(0, 0, |l| l.stock = 10)), vec![]);
        assert_eq!(codes(&with_lane(0, 0, |l| l.stock = 11)), one("doors[0].lanes[0].stock", "stock_above_capacity"));
    }

    #[test]
    fn product_must_exist_and_be_active() {
        assert_eq!(
            codes(&with_lane(1, 1, |l| l.product_id = Some(99))),
            one("doors[1].lanes[1].product_id", "unknown_product")
        );
        assert_eq!(
            codes(&with_lane(1, 1, |l| l.product_id = Some(2))),
            one("doors[1].lanes[1].product_id", "inactive_product")
        );
    }

    #[test]
    fn stock_needs_a_product() {
        assert_eq!(
            codes(&with_lane(0, 0, |l| {
                l.product_id = None;
                l.stock = 1;
            })),
            one("doors[0].lanes[0].stock", "stock_without_product")
        );
        assert_eq!(
            codes(&with_lane(0, 0, |l| l.product_id = None)),
            one("doors[0].lanes[0].stock", "stock_without_product")
        );
        let empty = with_lane(0, 0, |l| {
            l.product_id = None;
            l.stock = 0;
        });
        assert_eq!(codes(&empty), vec![]);
    }

    #[test]
    fn position_rules() {
        let at = |lat, lng| LayoutInput { lat, lng, ..good() };
        assert_eq!(codes(&at(Some(MAX_LATITUDE), Some(-180.0))), vec![]);
        assert_eq!(codes(&at(Some(-MAX_LATITUDE), Some(180.0))), vec![]);
        // Beyond the square a map index covers, the cabinet could never be found nearby.
        assert_eq!(codes(&at(Some(85.06), Some(0.0))), one("lat", "out_of_range"));
        assert_eq!(codes(&at(Some(90.5), Some(0.0))), one("lat", "out_of_range"));
        assert_eq!(codes(&at(Some(f64::NAN), Some(0.0))), one("lat", "out_of_range"));
        assert_eq!(codes(&at(Some(0.0), Some(180.5))), one("lng", "out_of_range"));
        assert_eq!(codes(&at(Some(10.0), None)), one("lng", "required"));
        assert_eq!(codes(&at(None, Some(10.0))), one("lat", "required"));
    }

    #[test]
    fn address_length() {
        let layout = |n| LayoutInput { address: Some("路".repeat(n)), ..good() };
        assert_eq!(codes(&layout(200)), vec![]);
        assert_eq!(codes(&layout(201)), one("address", "too_long"));
    }

    #[test]
    fn every_problem_is_listed() {
        let mut layout = good();
        layout.lat = None;
        layout.doors[0].lanes[0].channel = 99;
        layout.doors[0].lanes[1].product_id = Some(2);
        layout.doors[1].door = 1;
        layout.doors[1].lanes[1].threshold = 50;
        assert_eq!(
            codes(&layout),
            vec![
                ("lat".to_string(), "required"),
                ("doors[0].lanes[0].channel".to_string(), "out_of_range"),
                ("doors[0].lanes[1].product_id".to_string(), "inactive_product"),
                ("doors[1].door".to_string(), "duplicate"),
                ("doors[1].lanes[1].threshold".to_string(), "threshold_above_capacity"),
            ]
        );
    }

    /// Per lane: capacity, threshold and stock as fractions of it, product or none, name length.
    type LaneSeed = (u32, f64, f64, bool, usize);

    /// A layout valid by construction, with its sensor channel count.
    fn valid_layout() -> impl Strategy<Value = (LayoutInput, u32)> {
        let lane_seed = (1u32..=MAX_CAPACITY, 0f64..=1.0, 0f64..=1.0, any::<bool>(), 0usize..=MAX_LANE_NAME_CHARS);
        let doors = proptest::collection::vec(proptest::collection::vec(lane_seed, 1..=10), 1..=4);
        let position = proptest::option::of((-MAX_LATITUDE..=MAX_LATITUDE, -180f64..=180.0));
        (doors, 0u32..20, position, proptest::option::of(0usize..=MAX_ADDRESS_CHARS))
            .prop_flat_map(|(doors, spare, position, address)| {
                let total = doors.iter().map(Vec::len).sum::<usize>() as u32;
                let channels: Vec<u32> = (0..total + spare).collect();
                (Just(doors), Just(total + spare), Just(position), Just(address), Just(channels).prop_shuffle())
            })
            .prop_map(|(doors, sensor_channels, position, address, channels)| {
                let mut next_channel = channels.into_iter();
                let doors = doors
                    .into_iter()
                    .enumerate()
                    .map(|(d, seeds): (usize, Vec<LaneSeed>)| DoorInput {
                        door: d as u32 + 1,
                        lanes: seeds
                            .into_iter()
                            .enumerate()
                            .map(|(l, (capacity, t, s, has_product, name_len))| LaneInput {
                                code: format!("D{}-{l}", d + 1),
                                name: "n".repeat(name_len),
                                channel: next_channel.next().unwrap_or(0),
                                capacity,
                                threshold: (t * capacity as f64) as u32,
                                product_id: has_product.then_some(1),
                                stock: if has_product { (s * capacity as f64) as u32 } else { 0 },
                            })
                            .collect(),
                    })
                    .collect();
                let layout = LayoutInput {
                    address: address.map(|n| "a".repeat(n)),
                    lat: position.map(|p| p.0),
                    lng: position.map(|p| p.1),
                    doors,
                };
                (layout, sensor_channels)
            })
    }

    proptest! {
        #[test]
        fn valid_by_construction_passes((layout, channels) in valid_layout()) {
            prop_assert_eq!(validate(&layout, channels, catalogue), Ok(()));
        }

        #[test]
        fn a_channel_beyond_the_board_is_reported_at_its_lane(
            (layout, channels) in valid_layout(),
            pick in any::<prop::sample::Index>(),
            over in 0u32..1000,
        ) {
            let places: Vec<(usize, usize)> = layout
                .doors
                .iter()
                .enumerate()
                .flat_map(|(d, door)| (0..door.lanes.len()).map(move |l| (d, l)))
                .collect();
            let (d, l) = places[pick.index(places.len())];
            let mut layout = layout;
            layout.doors[d].lanes[l].channel = channels + over;
            let errors = validate(&layout, channels, catalogue).expect_err("channel out of range");
            let path = format!("doors[{d}].lanes[{l}].channel");
            prop_assert!(
                errors.iter().any(|e| e.field == path && e.code == "out_of_range"),
                "no out_of_range at {}: {:?}", path, errors
            );
            prop_assert_eq!(errors.len(), 1);
        }
    }
}
