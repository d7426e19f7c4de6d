//! The sentence templates stories are assembled from.
//!
//! A template is text with slots in braces, filled by the generator ([`super::generate`]):
//!
//! - characters, role `A` (hero), `B` (friend) or `C` (newcomer): `{A.name}` the name,
//!   `{A.spk}` the name as a speech attribution (a speaker span), `{A.he}` / `{A.He}` subject,
//!   `{A.him}` object, `{A.his}` / `{A.His}` possessive, `{A.kid}` "boy" or "girl". The
//!   pronoun forms write a pronoun only when the character is the most recently named one,
//!   otherwise the name ("Tom", "Tom's"), so pronouns always agree.
//! - `{an}` / `{An}`: "a" or "an", whichever suits the next word.
//! - `{<}` ... `{>}`: an aside, in parentheses or square brackets (chosen at random).
//! - story-wide: `{pet}` `{pet_colour}` `{pet_size}` `{thing}` `{thing_colour}` `{thing_size}`
//!   `{place}` `{time}` `{when}` ("in the morning", "at night") `{weather}` (adjective)
//!   `{wx}` (the noun of the bad weather that spoils the day) `{snacks}` `{fav_colour}`.
//! - drawn afresh for each arc or event: `{animal}` `{animals}` `{object}` `{objects}`
//!   `{food}` `{foods}` `{foods2}` `{colour}` `{colour2}` `{size}` `{size2}` `{place2}`
//!   `{number}` `{number2}` `{age}` `{good}` / `{bad}` (a pleasant / unpleasant feeling), and
//!   words from the subsets below that suit a context: `{kid_size}` `{animal_colour}`
//!   `{flower_colour}` `{happy}` `{sad}` `{afraid}` `{lonely}`. (`{size}` is never tall or short.)
//!
//! A slot written with a capital first letter (`{Number}`, `{When}`) is capitalised.
//! Speech only ever appears inside quotes written here, and every attribution names its
//! speaker. Templates use words in [`super::world`]'s lists only in the sense of the list.

/// One step of an arc: with probability `pct`%, one of `alts`.
pub struct Step {
    pub pct: u32,
    pub alts: &'static [&'static str],
}

/// A plot: the places it can happen in, and its steps in order.
pub struct Arc {
    pub name: &'static str,
    pub places: &'static [&'static str],
    /// Whether the day starts in good weather that `{wx}` then spoils.
    pub needs_fair_start: bool,
    /// Whether it must happen in the morning or afternoon.
    pub daytime: bool,
    /// Whether the characters are home by the end of it.
    pub ends_at_home: bool,
    pub steps: &'static [Step],
}

const fn step(pct: u32, alts: &'static [&'static str]) -> Step {
    Step { pct, alts }
}

/// Follow the opening phrase and ", "; they start in lowercase.
pub const INTROS: &[&str] = &[
    "there was {an} {kid_size} {A.kid} named {A.name}.",
    "there lived {an} {A.kid} named {A.name}.",
    "{an} {A.kid} named {A.name} lived in {an} {colour} house near the {place2}.",
    "{A.name} lived with {A.his} family in {an} {size} house by the {place2}.",
    "in {an} {size} village near the {place2}, there lived {an} {A.kid} named {A.name}.",
    "{an} {kid_size} {A.kid} named {A.name} lived next to the {place2}.",
];

/// About the hero, in groups by topic; a story uses one or two groups, one line of each.
pub const DETAILS: &[&[&str]] = &[
    &[
        "{A.He} was {age} years old.",
        "{A.name} {<}who was only {age}{>} loved to sing.",
    ],
    &[
        "{A.His} favourite colour was {fav_colour}.",
        "{<}{A.His} favourite colour was {fav_colour}.{>}",
    ],
    &["{A.He} loved {snacks} more than anything."],
    &["{A.He} was always {good}."],
    &["{A.He} liked to play with {A.his} {colour} {object}."],
];

/// Introduces the pet; every story has one.
pub const PETS: &[&str] = &[
    "{A.He} had {an} {pet_size} {pet_colour} {pet}.",
    "{A.His} pet was {an} {pet_size} {pet_colour} {pet}.",
    "{A.He} lived with {an} {pet_colour} {pet} that loved to play.",
    "{A.He} had {an} {pet} {<}{an} {pet_size}, {pet_colour} one{>}.",
];

/// Introduces the friend, B.
pub const FRIENDS: &[&str] = &[
    "{A.His} best friend was {an} {B.kid} named {B.name}.",
    "{A.He} had a friend named {B.name}, who lived next door.",
    "{B.name} {<}{A.his} best friend{>} lived next door.",
    "{A.name} and {B.name} were best friends.",
    "Every day, {A.he} played with {A.his} friend {B.name}.",
];

/// Starts the day: sets the place, time of day and weather.
pub const SETTINGS: &[&str] = &[
    "On {an} {weather} {time}, {A.name} and {B.name} went to the {place}.",
    "It was {an} {weather} {time}. {A.name} and {B.name} walked to the {place}.",
    "{When}, {A.name} took {A.his} {pet} to the {place}, and {B.name} came too.",
    "The weather was {weather} that {time}, so {A.name} and {B.name} went to the {place}.",
    "That {time}, {A.name} asked {B.name} to come to the {place}. The day was {weather}.",
];

/// Small events that fit anywhere in the body of a story.
pub const EVENTS: &[&str] = &[
    "There were {number} {animal_colour} {animals} on the path.",
    "{A.name} counted {number} {colour} {objects} on the way.",
    "The {place} {<}{an} {size} one{>} was full of {flower_colour} flowers.",
    "{A.His} {pet} ran after {an} {colour} {object}.",
    "The {pet} was {happy} to be outside.",
    "{A.name} never liked the {wx}.",
    "{A.He} did not want to go home yet.",
    "{B.name} did not like {foods}, but {B.he} loved {foods2}.",
    "What would they do next?",
    "\"This is fun!\" said {B.spk}.",
    "{A.name} ate {number} {foods} for a snack.",
    "{<}{A.His} {pet} was {age} years old.{>}",
    "{<}This really happened.{>}",
    "The sky was blue, and the grass was green.",
    "{B.name} picked up {number} {colour} stones.",
    "Nobody saw the {size} {animal} behind the tree.",
    "{A.name} was never {afraid} when {B.name} was near.",
    "Did {A.name} see any {animals}? No, {A.he} did not.",
    "{B.name} told {A.name} a funny story, and they both laughed.",
    "{A.name} found {number} shells and {an} {size} {colour} stone.",
    "\"Look, {B.name}!\" said {A.spk}. \"I can see {number} {animals}!\"",
];

/// Wind down before the ending.
pub const CLOSINGS: &[&str] = &[
    "At the end of the day, {A.name} was tired but {happy}.",
    "That night, {A.name} dreamed about the {place}.",
];

/// Wind down before the ending, when the plot leaves the characters away from home.
pub const AWAY_CLOSINGS: &[&str] = &[
    "Then it was time to go home.",
    "They walked home together, {happy} and tired.",
    "\"Can we come back tomorrow?\" asked {A.spk}. \"Of course!\" said {B.spk}.",
];

pub const ARCS: &[Arc] = &[
    Arc {
        name: "lost",
        places: &[
            "park", "forest", "beach", "garden", "meadow", "hill", "farm", "zoo", "lake",
        ],
        needs_fair_start: false,
        daytime: false,
        ends_at_home: false,
        steps: &[
            step(
                100,
                &[
                    "{A.name} took {A.his} {thing_colour} {thing} with {A.him}.",
                    "{A.name} brought {A.his} {thing_size} {thing_colour} {thing}.",
                    "{A.name} wanted to show {A.his} new {thing_colour} {thing} to {B.name}.",
                ],
            ),
            step(
                100,
                &[
                    "But soon, the {thing} was gone!",
                    "Then {A.name} put the {thing} down, and later it was gone.",
                    "After a while, {A.name} could not find {A.his} {thing} anywhere.",
                    "Suddenly, the wind blew the {thing} away!",
                ],
            ),
            step(
                100,
                &[
                    "{A.He} felt very {sad}.",
                    "{A.name} was so {sad} that {A.he} began to cry.",
                    "This made {A.him} {sad}.",
                    "{A.name} sat down on the grass. {A.He} was {sad}.",
                ],
            ),
            step(
                75,
                &[
                    "\"Where is my {thing}?\" asked {A.spk}.",
                    "{A.spk} asked, \"Has anyone seen my {thing}?\"",
                    "\"I can't find my {thing}!\" cried {A.spk}.",
                    "\"Oh no! Where could it be?\" {A.spk} wondered.",
                ],
            ),
            step(
                100,
                &[
                    "\"Don't worry, I will help you,\" said {B.spk}.",
                    "\"Don't be {sad},\" said {B.spk}. \"We will find it together.\"",
                    "{B.spk} said, \"Let's look for it together.\"",
                    "{B.name} wanted to help, so {B.he} looked everywhere.",
                ],
            ),
            step(
                60,
                &[
                    "They looked behind the trees and under the bushes.",
                    "They searched the whole {place}, but the {thing} was not there.",
                    "They looked under {number} {objects}, but they found nothing.",
                    "Was it under the trees? Was it by the water? Nobody knew.",
                    "{A.His} {pet} sniffed the grass and ran ahead.",
                ],
            ),
            step(
                100,
                &[
                    "At last, {A.name} found the {thing} under {an} {size} bush.",
                    "Then {A.his} {pet} ran up with the {thing} in its mouth!",
                    "Suddenly, {B.name} saw something {thing_colour} in the grass. It was the {thing}!",
                    "At last, they found it behind {an} {size} rock.",
                ],
            ),
            step(
                100,
                &[
                    "{A.name} was so {happy}!",
                    "{A.name} hugged {B.name}. \"Thank you!\" said {A.spk}.",
                    "\"My {thing}!\" shouted {A.spk}. {A.He} was very {happy}.",
                    "{A.name} laughed and held the {thing} tight.",
                ],
            ),
        ],
    },
    Arc {
        name: "animal",
        places: &[
            "forest", "park", "farm", "garden", "pond", "meadow", "river", "lake", "hill",
        ],
        needs_fair_start: false,
        daytime: false,
        ends_at_home: false,
        steps: &[
            step(
                100,
                &[
                    "At the {place}, they saw {an} {size} {animal_colour} {animal}.",
                    "Suddenly, {an} {size} {animal} came out from behind a tree.",
                    "Near the path, {A.name} saw {an} {size} {animal} sitting all alone.",
                    "There, by a tall tree, sat {an} {animal_colour} {animal}.",
                ],
            ),
            step(
                100,
                &[
                    "{A.name} was {afraid} at first.",
                    "{B.name} hid behind {A.name}. {B.He} was {afraid}.",
                    "{A.name} and {B.name} stood very still.",
                ],
            ),
            step(
                80,
                &[
                    "\"Is it friendly?\" asked {B.spk}.",
                    "{B.spk} whispered, \"Do not be scared. It is just {an} {animal}.\"",
                    "\"What {an} {size} {animal}!\" shouted {A.spk}.",
                    "{A.spk} asked, \"Can we take it home?\"",
                    "\"Look at the {animal}, {B.name}!\" said {A.spk}.",
                ],
            ),
            step(
                100,
                &[
                    "The {animal} was very friendly.",
                    "The {animal} did not run away.",
                    "The {animal} was not dangerous at all.",
                    "It wanted to play with them.",
                ],
            ),
            step(
                70,
                &[
                    "{A.name} gave it {an} {food}, and it ate the whole thing.",
                    "{A.name} and {B.name} played with the {animal} all {time}.",
                    "The {animal} followed them all the way to the {place2}.",
                ],
            ),
            step(
                100,
                &[
                    "{A.name} was very {happy}.",
                    "Everyone was {happy}.",
                    "\"I love this {animal}!\" said {B.spk}.",
                ],
            ),
        ],
    },
    Arc {
        name: "weather",
        places: &[
            "beach", "park", "hill", "meadow", "lake", "garden", "forest",
        ],
        needs_fair_start: true,
        daytime: true,
        ends_at_home: true,
        steps: &[
            step(
                100,
                &[
                    "They played with {A.his} {colour} {object} for a long time.",
                    "They ran and jumped and laughed.",
                    "They played with {number} {colour} {objects} on the grass.",
                    "{A.name} and {B.name} danced and sang songs.",
                ],
            ),
            step(
                100,
                &[
                    "Suddenly, the {wx} came.",
                    "Then the sky turned grey, and the {wx} came.",
                    "But soon, dark clouds filled the sky, and the {wx} came.",
                ],
            ),
            step(
                100,
                &[
                    "{A.name} was {afraid}.",
                    "{B.name} did not like the {wx}.",
                    "{A.name} and {B.name} were cold and {sad}.",
                ],
            ),
            step(
                80,
                &[
                    "\"Let's go home!\" shouted {B.spk}.",
                    "{A.spk} asked, \"Where can we hide?\"",
                    "\"I am {afraid},\" said {A.spk}.",
                    "\"Don't be {afraid},\" said {B.spk}. \"It is just the {wx}.\"",
                ],
            ),
            step(
                100,
                &[
                    "They ran all the way home.",
                    "They hid under {an} {size} tree until the {wx} stopped.",
                    "They hurried back to {A.his} house.",
                ],
            ),
            step(
                70,
                &[
                    "At home, they ate {number} {foods} and drank warm milk.",
                    "{A.His} mum gave them {foods} and {colour} blankets.",
                    "Soon the {wx} stopped, and the sunshine came back.",
                ],
            ),
            step(
                100,
                &[
                    "{A.name} and {B.name} felt {happy} again.",
                    "They were warm and {happy}.",
                    "\"That was {an} adventure!\" laughed {A.spk}.",
                ],
            ),
        ],
    },
    Arc {
        name: "market",
        places: &["market", "village", "town"],
        needs_fair_start: false,
        daytime: true,
        ends_at_home: true,
        steps: &[
            step(
                100,
                &[
                    "At the {place}, they saw {number2} {colour} {objects} and {number} {foods}.",
                    "The {place} was full of {foods}, {foods2} and {colour} {objects}.",
                ],
            ),
            step(
                100,
                &[
                    "{A.name} wanted to buy {an} {size} {object}, but {A.he} had only {number2} coins.",
                    "{A.name} wanted to buy {foods} for a picnic.",
                ],
            ),
            step(
                80,
                &[
                    "\"How much is the {object}?\" asked {A.spk}.",
                    "{A.spk} asked, \"Can we buy some {foods}?\"",
                    "\"I have {number2} coins,\" said {A.spk}. \"Is that enough?\"",
                ],
            ),
            step(
                100,
                &[
                    "{B.spk} said, \"I can help. I have some coins too.\"",
                    "{B.name} gave {A.name} {number} coins.",
                    "{B.name} had coins too, so they shared.",
                ],
            ),
            step(
                100,
                &[
                    "They bought {number} {foods} and {an} {colour} {object}.",
                    "They paid for the {object} and carried it home.",
                ],
            ),
            step(
                60,
                &[
                    "On the way home, they counted the {foods}. There were {number} of them!",
                    "{A.name} did not eat all the {foods}. {A.He} shared them with {B.name}.",
                ],
            ),
            step(
                100,
                &[
                    "{A.name} was {happy}.",
                    "They were both very {happy}.",
                    "\"This is the best day!\" said {B.spk}.",
                ],
            ),
        ],
    },
    Arc {
        name: "gift",
        places: &["park", "garden", "beach", "meadow", "hill", "lake"],
        needs_fair_start: false,
        daytime: false,
        ends_at_home: false,
        steps: &[
            step(
                100,
                &[
                    "{A.name} had a surprise for {B.name}.",
                    "It was {B.name}'s birthday, and {A.name} had a present for {B.him}.",
                ],
            ),
            step(
                100,
                &[
                    "The night before, {A.name} painted {number} {colour} stones.",
                    "{A.He} wrapped {an} {colour} {object} in {colour2} paper.",
                    "{A.He} found {an} {size} {object} and painted it {colour}.",
                ],
            ),
            step(
                100,
                &[
                    "{A.name} gave the present to {B.name}.",
                    "{A.He} gave {B.him} the present.",
                ],
            ),
            step(
                100,
                &[
                    "When {B.name} opened it, {B.he} was so {good}!",
                    "{B.name} opened the present slowly.",
                ],
            ),
            step(
                90,
                &[
                    "\"I love it!\" said {B.spk}.",
                    "{B.spk} said, \"Thank you, {A.name}! It is beautiful.\"",
                    "\"Is this for me?\" asked {B.spk}. \"Yes!\" said {A.spk}.",
                    "\"Wow! Did you make it?\" asked {B.spk}.",
                ],
            ),
            step(
                100,
                &[
                    "{A.name} was {good} too.",
                    "{A.name} smiled. {A.He} felt very {good}.",
                ],
            ),
        ],
    },
    Arc {
        name: "new_friend",
        places: &["park", "school", "library", "beach", "garden"],
        needs_fair_start: false,
        daytime: false,
        ends_at_home: false,
        steps: &[
            step(
                100,
                &[
                    "At the {place}, they met {an} {C.kid} named {C.name}.",
                    "There, {A.name} saw {an} {C.kid} named {C.name} sitting alone.",
                ],
            ),
            step(
                100,
                &[
                    "{C.name} looked {lonely}.",
                    "{C.He} was new in town, and {C.he} had no friends.",
                ],
            ),
            step(
                100,
                &[
                    "\"Why are you {lonely}?\" asked {A.spk}.",
                    "{A.spk} asked, \"Do you want to play with us?\"",
                ],
            ),
            step(
                90,
                &[
                    "\"I have nobody to play with,\" said {C.spk}.",
                    "\"Yes, please!\" said {C.spk}.",
                    "{C.spk} said, \"I am new here. I don't know anyone.\"",
                ],
            ),
            step(
                100,
                &[
                    "\"You can play with us!\" said {B.spk}.",
                    "{B.name} gave {C.name} {an} {colour} {object}.",
                    "{A.name} shared {A.his} {snacks} with {C.name}.",
                ],
            ),
            step(
                70,
                &[
                    "They played with {A.his} {pet} all {time}.",
                    "They played hide and seek until it was time to go.",
                ],
            ),
            step(
                100,
                &[
                    "{C.name} was not {lonely} any more.",
                    "Now {C.name} had two new friends.",
                    "From then on, {C.name} was their friend.",
                ],
            ),
        ],
    },
];

/// Animals that can be a pet.
pub const PET_ANIMALS: &[&str] = &[
    "dog", "cat", "rabbit", "bird", "mouse", "turtle", "puppy", "kitten", "hedgehog", "duck",
    "hen", "frog", "goat", "lamb", "pig", "horse",
];

/// Places that can be `{place2}`: somewhere nearby, outdoors or in town.
pub const NEARBY: &[&str] = &[
    "park", "forest", "beach", "farm", "river", "hill", "market", "library", "pond", "meadow",
    "lake", "zoo", "castle", "school",
];

/// Sizes for `{size}` and `{pet_size}`: things and animals (not "tall", "short").
/// Sizes of pets and things in stories (every size word, for labels, is `world::SIZES`).
pub const THING_SIZES: &[&str] = &["big", "small", "tiny", "huge", "little", "large"];
/// Sizes for a child.
pub const KID_SIZES: &[&str] = &["little", "small", "tall", "short"];
/// Colours an animal can be.
pub const ANIMAL_COLOURS: &[&str] = &["brown", "white", "black", "grey", "orange"];
/// Colours a flower can be.
pub const FLOWER_COLOURS: &[&str] = &["red", "blue", "yellow", "purple", "pink", "white", "orange"];
/// Feelings for things going well.
pub const HAPPY: &[&str] = &["happy", "glad", "cheerful", "excited"];
/// Feelings for losing something.
pub const SAD: &[&str] = &["sad", "upset", "worried"];
/// Feelings for a fright.
pub const AFRAID: &[&str] = &["scared", "nervous", "worried"];
/// Feelings for being alone.
pub const LONELY: &[&str] = &["sad", "lonely", "upset"];
