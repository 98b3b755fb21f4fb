//! The sampler's vocabulary beyond the templates: phrases for wildcard slots, and the
//! "none" class's chit-chat (small talk, questions the assistant has no intent for,
//! acknowledgements), generated from a small grammar.
use super::sample::tidy;
use super::Rng;

/// A phrase for a wildcard slot: what a user would say there.
pub(super) fn wildcard(list: &str, rng: &mut Rng) -> &'static str {
    let pool: &[&str] = match list {
        "timer_command" => &[
            "turn off the lights",
            "turn on the fan",
            "close the blinds",
            "stop the music",
            "lock the door",
        ],
        "timer_name" => &["pizza", "laundry", "tea", "pasta", "workout", "eggs"],
        "search_query" => &[
            "jazz",
            "the beatles",
            "some rock music",
            "my playlist",
            "a podcast",
        ],
        "shopping_list_item" | "todo_list_item" => {
            &["milk", "eggs", "bread", "batteries", "call mom", "dog food"]
        }
        "zone" => &["work", "school", "the gym", "home"],
        _ => &["hello", "dinner is ready", "time to go", "something"],
    };
    pool[rng.below(pool.len())]
}

/// A sentence that is no command: small talk, questions the assistant has no intent
/// for, acknowledgements.
pub(super) fn chatter(rng: &mut Rng) -> String {
    const FIXED: &[&str] = &[
        "how are you",
        "thank you",
        "thanks a lot",
        "good morning",
        "good night everyone",
        "what's your name",
        "tell me a joke",
        "i'm bored",
        "that's funny",
        "who are you",
        "hello there",
        "see you later",
        "what is the capital of france",
        "what's two plus two",
        "how tall is mount everest",
        "yes",
        "no",
        "maybe later",
        "okay",
        "sounds good",
        "i don't know",
        "what does that mean",
        "how do you spell necessary",
        "who won the game yesterday",
        "what should i cook for dinner",
    ];
    const ASK: &[&str] = &[
        "tell me about",
        "who invented",
        "what do you think about",
        "i really like",
        "i don't like",
        "do you know anything about",
        "explain",
        "how do i make",
        "where can i buy",
        "why do people like",
        "my friend loves",
        "let's talk about",
        "i read a book about",
        "can you recommend",
        "what is the history of",
        "how much does it cost to fix",
    ];
    const TOPIC: &[&str] = &[
        "the moon",
        "pizza",
        "dinosaurs",
        "my dog",
        "football",
        "the roman empire",
        "quantum physics",
        "your favorite movie",
        "cats",
        "the ocean",
        "chess",
        "a good book",
        "paris",
        "bicycles",
        "the stock market",
        "volcanoes",
        "my birthday",
        "bananas",
        "the internet",
        "a car",
        "pancakes",
        "my homework",
    ];
    const OPENER: &[&str] = &["", "", "", "hey", "so", "well", "um", "okay", "you know"];
    let opener = OPENER[rng.below(OPENER.len())];
    let body = if rng.below(4) == 0 {
        FIXED[rng.below(FIXED.len())].to_string()
    } else {
        format!(
            "{} {}",
            ASK[rng.below(ASK.len())],
            TOPIC[rng.below(TOPIC.len())]
        )
    };
    tidy(&format!("{opener} {body}"))
}
