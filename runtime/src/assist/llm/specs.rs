//! The intents the LLM stage may choose, and which of them a number said fits.

use crate::assist::quantity::{Quantity, Unit};
use crate::intent::home::Entity;

/// An intent the LLM may choose: its name, the words the prompt describes it by,
/// what it targets, and its number slot.
pub(super) struct Spec {
    pub name: &'static str,
    /// The action in plain words: what the model chooses (a small model maps an
    /// utterance to "set brightness" far better than to `HassLightSet`).
    pub say: &'static str,
    pub what: &'static str,
    pub target: Target,
    pub number: Option<Number>,
}

/// What an intent acts on.
pub(super) enum Target {
    /// Nothing (the time, the weather, media, timers).
    None,
    /// A device of these domains (any domain when empty), or an area. `area_slots` are
    /// the fixed slots the templates report for the area form (`domain: light`); with
    /// none and no number the model names the kind of device (`domain`) itself.
    Device {
        domains: &'static [&'static str],
        area_slots: &'static [(&'static str, &'static str)],
    },
}

/// A whole number in `min..=max` under one of `slots` (the template stage's slot
/// names), each with the unit it is said in.
pub(super) struct Number {
    pub slots: &'static [(&'static str, Unit)],
    pub min: u32,
    pub max: u32,
}

impl Number {
    /// The slot a quantity fits: the one of its unit, or with no unit said, the only
    /// slot (`None` for several: the model picks the key).
    pub fn slot_for(&self, q: &Quantity) -> Option<Option<&'static str>> {
        if !(self.min..=self.max).contains(&q.value) {
            return None;
        }
        match (q.unit, self.slots) {
            (Some(u), slots) => slots.iter().find(|(_, su)| *su == u).map(|(k, _)| Some(*k)),
            (None, [(k, _)]) => Some(Some(*k)),
            (None, _) => Some(None),
        }
    }

    /// The quantities said for this slot: those with its unit when any has a unit,
    /// else the unit-less ones; all in range.
    pub fn said<'a>(&self, said: &'a [Quantity]) -> Vec<&'a Quantity> {
        let with_unit = said.iter().any(|q| q.unit.is_some());
        said.iter()
            .filter(|q| q.unit.is_some() == with_unit && self.slot_for(q).is_some())
            .collect()
    }
}

const ANY: Target = Target::Device {
    domains: &[],
    area_slots: &[],
};

const PERCENT: Unit = Unit::Percent;

/// The intents the LLM may choose. Number ranges are those of the HA data's lists
/// (`brightness`, `temperature`, `timer_*`, `volume`, `position`), whole numbers only.
pub(super) const SPECS: &[Spec] = &[
    Spec {
        name: "HassTurnOn",
        say: "turn on",
        what: "switch on, open or start a device",
        target: ANY,
        number: None,
    },
    Spec {
        name: "HassTurnOff",
        say: "turn off",
        what: "switch off, close or stop a device",
        target: ANY,
        number: None,
    },
    Spec {
        name: "HassToggle",
        say: "toggle",
        what: "toggle a device",
        target: ANY,
        number: None,
    },
    Spec {
        name: "HassGetState",
        say: "check state",
        what: "ask whether a device is on, off, open or closed",
        target: ANY,
        number: None,
    },
    Spec {
        name: "HassLightSet",
        say: "set brightness",
        what: "set a light's brightness in percent",
        target: Target::Device {
            domains: &["light"],
            area_slots: &[("domain", "light")],
        },
        number: Some(Number {
            slots: &[("brightness", PERCENT)],
            min: 0,
            max: 100,
        }),
    },
    Spec {
        name: "HassClimateSetTemperature",
        say: "set temperature",
        what: "set the heating to a temperature in degrees",
        target: Target::Device {
            domains: &["climate"],
            area_slots: &[],
        },
        number: Some(Number {
            slots: &[("temperature", Unit::Degrees)],
            min: 0,
            max: 100,
        }),
    },
    Spec {
        name: "HassSetVolume",
        say: "set volume",
        what: "set the volume in percent",
        target: Target::Device {
            domains: &["media_player"],
            area_slots: &[],
        },
        number: Some(Number {
            slots: &[("volume_level", PERCENT)],
            min: 0,
            max: 100,
        }),
    },
    Spec {
        name: "HassSetPosition",
        say: "set position",
        what: "open or close blinds or a door to a position in percent",
        target: Target::Device {
            domains: &["cover", "valve"],
            area_slots: &[("domain", "cover")],
        },
        number: Some(Number {
            slots: &[("position", PERCENT)],
            min: 0,
            max: 100,
        }),
    },
    Spec {
        name: "HassStartTimer",
        say: "start timer",
        what: "start a timer for some hours, minutes or seconds",
        target: Target::None,
        number: Some(Number {
            slots: &[
                ("hours", Unit::Hours),
                ("minutes", Unit::Minutes),
                ("seconds", Unit::Seconds),
            ],
            min: 1,
            max: 100,
        }),
    },
    Spec {
        name: "HassGetCurrentTime",
        say: "tell time",
        what: "ask the time",
        target: Target::None,
        number: None,
    },
    Spec {
        name: "HassGetCurrentDate",
        say: "tell date",
        what: "ask the date",
        target: Target::None,
        number: None,
    },
    Spec {
        name: "HassGetWeather",
        say: "tell weather",
        what: "ask about the weather",
        target: Target::None,
        number: None,
    },
    Spec {
        name: "HassMediaPause",
        say: "pause media",
        what: "pause the music or TV",
        target: Target::None,
        number: None,
    },
    Spec {
        name: "HassMediaUnpause",
        say: "resume media",
        what: "resume the music or TV",
        target: Target::None,
        number: None,
    },
    Spec {
        name: "HassMediaNext",
        say: "next track",
        what: "skip to the next track",
        target: Target::None,
        number: None,
    },
    Spec {
        name: "HassMediaPrevious",
        say: "previous track",
        what: "go back to the previous track",
        target: Target::None,
        number: None,
    },
    Spec {
        name: "HassNevermind",
        say: "never mind",
        what: "cancel, never mind",
        target: Target::None,
        number: None,
    },
];

/// The intents the model chooses among, given the numbers said (deterministic rules,
/// documented in docs/runtime-api.md):
/// - a number said that fits an intent's number slot (its unit, or no unit, and in
///   range) leaves only the intents it fits;
/// - no such number leaves only the intents without a number slot (a number intent
///   would need the model to invent the value);
/// - of the number intents left, those acting on the kind of device the utterance
///   names (`named`: the devices it names, if any) are kept when there are some.
pub(super) fn candidates<'s>(
    specs: &[&'s Spec],
    said: &[Quantity],
    named: &[&Entity],
) -> Vec<&'s Spec> {
    let fits = |s: &Spec| s.number.as_ref().is_some_and(|n| !n.said(said).is_empty());
    let numbered: Vec<&Spec> = specs.iter().copied().filter(|s| fits(s)).collect();
    if numbered.is_empty() {
        return specs
            .iter()
            .copied()
            .filter(|s| s.number.is_none())
            .collect();
    }
    let acts_on_named = |s: &Spec| match s.target {
        Target::Device { domains, .. } => named
            .iter()
            .any(|e| domains.is_empty() || domains.contains(&e.domain.as_str())),
        Target::None => false,
    };
    let on_named: Vec<&Spec> = numbered
        .iter()
        .copied()
        .filter(|s| acts_on_named(s))
        .collect();
    if on_named.is_empty() {
        numbered
    } else {
        on_named
    }
}

/// The intent names the LLM stage can produce (those of them the data defines are used).
pub fn llm_intents() -> impl Iterator<Item = &'static str> {
    SPECS.iter().map(|s| s.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assist::quantity::quantities;

    fn names(text: &str, named: &[&Entity]) -> Vec<&'static str> {
        let specs: Vec<&Spec> = SPECS.iter().collect();
        candidates(&specs, &quantities(text), named)
            .iter()
            .map(|s| s.name)
            .collect()
    }

    fn entity(domain: &str) -> Entity {
        Entity {
            name: "X".into(),
            domain: domain.into(),
            device_class: None,
            area: None,
            aliases: Vec::new(),
            exposed: true,
        }
    }

    #[test]
    fn a_number_said_narrows_the_intents() {
        assert_eq!(
            names("dim it to 30 percent", &[]),
            ["HassLightSet", "HassSetVolume", "HassSetPosition"]
        );
        assert_eq!(
            names("dim it to 30 percent", &[&entity("light")]),
            ["HassLightSet"]
        );
        assert_eq!(names("21 degrees", &[]), ["HassClimateSetTemperature"]);
        assert_eq!(names("in half an hour", &[]), ["HassStartTimer"]);
        // No unit: every number intent, then the device's kind decides.
        assert_eq!(
            names("volume 60", &[&entity("media_player")]),
            ["HassSetVolume"]
        );
        // Out of every range (a year): as if no number was said.
        let none = names("what happened in 1969", &[]);
        assert!(none.contains(&"HassTurnOn") && !none.contains(&"HassLightSet"));
    }

    #[test]
    fn no_number_no_number_intents() {
        let n = names("turn off the lamp", &[&entity("light")]);
        assert!(n.contains(&"HassTurnOff") && n.contains(&"HassGetState"));
        assert!(!n.contains(&"HassLightSet") && !n.contains(&"HassStartTimer"));
    }
}
