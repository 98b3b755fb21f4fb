//! The compiled matcher: templates are parsed once into a node graph (rules and lists
//! resolved to indices, literal text pre-normalized), and each utterance is matched
//! by a backtracking walk over that graph in byte space, pre-filtered by the literal
//! text every template requires. All parses of a candidate template are explored
//! (within a step budget, so hostile input stays bounded) and ranked as hassil does.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::Value;

use super::data::{parse_at, IntentsFile, ListDef, ListValueDef, RangeDef, Source};
use super::fuzzy::{bounded_levenshtein, max_edits, FILLERS};
use super::home::Home;
use super::normalize::{normalize_phrase, parse_number_words, Normalized};
use super::template::Expr;
use crate::{Error, Result};

/// Work allowed per utterance (node visits); bounds pathological input.
const STEP_BUDGET: usize = 400_000;

pub(crate) enum Node {
    Text(Box<str>),
    Seq(Vec<Node>),
    Alt(Vec<Node>),
    Rule(usize),
    List {
        list: usize,
        slot: Arc<str>,
    },
    /// A subtree without slots (only text, alternatives, rules of text): its parses
    /// are collected and de-duplicated by end position before the continuation runs,
    /// so nested optional rules (`[<all>] [<the>]`) do not multiply the work after them.
    Pure(Box<Node>),
}

struct ListValue {
    input: Node,
    out: Option<Value>,
    context: Vec<(Arc<str>, Value)>,
    /// Normalized text of a home name, for edit-distance matching in the fuzzy stage.
    fuzzy: Option<String>,
}

struct RangeList {
    from: f64,
    to: f64,
    step: f64,
    multiplier: f64,
    fractions: bool,
}

enum SlotList {
    Values(Vec<ListValue>),
    Range(RangeList),
    Wildcard,
}

struct Block {
    intent: Arc<str>,
    slots: Vec<(Arc<str>, Value)>,
    requires: Vec<(Arc<str>, Value)>,
    excludes: Vec<(Arc<str>, Value)>,
    response: Option<String>,
}

struct Sentence {
    node: Node,
    block: usize,
    /// Literal fragments any match must contain (cheap pre-filter).
    required: Vec<Box<str>>,
}

/// A raw match, before it becomes an `IntentMatch`.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    pub intent: Arc<str>,
    pub slots: BTreeMap<String, Value>,
    pub response: Option<String>,
    /// Sort key, lowest best: (edits + skipped fillers, wildcards, -literal bytes, wildcard bytes).
    pub key: (usize, usize, isize, usize),
    /// Filler words the fuzzy stage skipped.
    pub fillers: usize,
    /// Bytes of home names matched fuzzily, and the edits that took.
    pub fuzzy_len: usize,
    pub edits: usize,
}

/// The compiled templates and lists.
pub(crate) struct Matcher {
    sentences: Vec<Sentence>,
    blocks: Vec<Block>,
    rules: Vec<Node>,
    lists: Vec<SlotList>,
    pub(crate) skip_words: Vec<Vec<String>>,
    area_context: Option<String>,
    pub(crate) warnings: Vec<String>,
}

struct Compiler<'a> {
    src: &'a Source,
    rule_ids: HashMap<String, usize>,
    list_ids: HashMap<String, usize>,
    rules: Vec<Option<Node>>,
    lists: Vec<SlotList>,
    warnings: Vec<String>,
}

impl Compiler<'_> {
    fn node(
        &mut self,
        e: &Expr,
        rules: &HashMap<String, usize>,
        lists: &HashMap<String, usize>,
    ) -> Result<Node> {
        Ok(match e {
            Expr::Text(t) => Node::Text(normalize_template_text(t).into()),
            Expr::Seq(items) => Node::Seq(
                items
                    .iter()
                    .map(|i| self.node(i, rules, lists))
                    .collect::<Result<_>>()?,
            ),
            Expr::Alt(items) => Node::Alt(
                items
                    .iter()
                    .map(|i| self.node(i, rules, lists))
                    .collect::<Result<_>>()?,
            ),
            Expr::Rule(name) => Node::Rule(*rules.get(name).ok_or_else(|| {
                Error::Format(format!(
                    "{}: unknown expansion rule <{name}>",
                    self.src.name
                ))
            })?),
            Expr::List { list, slot } => {
                let id = match lists.get(list) {
                    Some(&id) => id,
                    None => {
                        // Lists HA fills at run time from its registry (none here):
                        // compile to an empty list so the template just never matches.
                        self.warnings
                            .push(format!("{}: list {{{list}}} is not defined", self.src.name));
                        self.lists.push(SlotList::Values(Vec::new()));
                        let id = self.lists.len() - 1;
                        self.list_ids.insert(list.clone(), id);
                        id
                    }
                };
                Node::List {
                    list: id,
                    slot: slot.as_str().into(),
                }
            }
        })
    }

    fn list(&mut self, def: &ListDef, rules: &HashMap<String, usize>) -> Result<SlotList> {
        Ok(match def {
            ListDef::Wildcard { .. } => SlotList::Wildcard,
            ListDef::Range { range } => range_list(range)?,
            ListDef::Values { values } => {
                let mut out = Vec::with_capacity(values.len());
                let empty = HashMap::new();
                for v in values {
                    let (input, value_out, context) = match v {
                        ListValueDef::Plain(s) => {
                            (s, Some(Value::String(s.clone())), Default::default())
                        }
                        ListValueDef::Full {
                            input,
                            out,
                            context,
                        } => (input, out.clone(), context.clone()),
                    };
                    let expr = parse_at(input, self.src)?;
                    out.push(ListValue {
                        input: self.node(&expr, rules, &empty)?,
                        out: value_out,
                        context: context
                            .into_iter()
                            .map(|(k, v)| (Arc::from(k.as_str()), v))
                            .collect(),
                        fuzzy: None,
                    });
                }
                SlotList::Values(out)
            }
        })
    }
}

fn range_list(r: &RangeDef) -> Result<SlotList> {
    let ordered = r.from.partial_cmp(&r.to).is_some_and(|o| o.is_le());
    if !ordered || r.step.is_nan() || r.step <= 0.0 || !r.multiplier.is_finite() {
        return Err(Error::Format(format!(
            "bad range {}..{} step {}",
            r.from, r.to, r.step
        )));
    }
    Ok(SlotList::Range(RangeList {
        from: r.from,
        to: r.to,
        step: r.step,
        multiplier: r.multiplier,
        fractions: r.fractions.is_some(),
    }))
}

/// Template literals go through the same normalization as input (punctuation, apostrophes),
/// keeping leading/trailing spaces, which are word boundaries.
fn normalize_template_text(t: &str) -> String {
    let core = normalize_phrase(t);
    let mut s = String::with_capacity(t.len() + 2);
    if t.starts_with(' ') {
        s.push(' ');
    }
    s.push_str(&core);
    if t.ends_with(' ') && !core.is_empty() {
        s.push(' ');
    }
    s
}

fn required(node: &Node, rules: &[Node], depth: usize) -> Vec<Box<str>> {
    if depth > 32 {
        return Vec::new();
    }
    match node {
        Node::Text(t) => {
            let t = t.trim();
            if t.is_empty() {
                Vec::new()
            } else {
                vec![t.into()]
            }
        }
        Node::Seq(items) => items
            .iter()
            .flat_map(|i| required(i, rules, depth + 1))
            .collect(),
        Node::Alt(items) => {
            let mut sets = items.iter().map(|i| required(i, rules, depth + 1));
            let Some(mut acc) = sets.next() else {
                return Vec::new();
            };
            for s in sets {
                acc.retain(|x| s.contains(x));
            }
            acc
        }
        Node::Rule(id) => required(&rules[*id], rules, depth + 1),
        Node::Pure(inner) => required(inner, rules, depth + 1),
        Node::List { .. } => Vec::new(),
    }
}

fn is_pure(n: &Node, rules: &[Node]) -> bool {
    match n {
        Node::Text(_) | Node::Pure(_) => true,
        Node::List { .. } => false,
        Node::Seq(items) | Node::Alt(items) => items.iter().all(|i| is_pure(i, rules)),
        Node::Rule(id) => is_pure(&rules[*id], rules),
    }
}

/// Wraps slot-free alternatives and rule references in `Node::Pure`.
fn mark_pure(n: Node, rules: &[Node]) -> Node {
    let n = match n {
        Node::Seq(items) => Node::Seq(items.into_iter().map(|i| mark_pure(i, rules)).collect()),
        Node::Alt(items) => Node::Alt(items.into_iter().map(|i| mark_pure(i, rules)).collect()),
        n => n,
    };
    if matches!(n, Node::Alt(_) | Node::Rule(_)) && is_pure(&n, rules) {
        Node::Pure(Box::new(n))
    } else {
        n
    }
}

impl Matcher {
    pub(crate) fn compile(file: &IntentsFile, src: &Source, home: &Home) -> Result<Matcher> {
        let mut c = Compiler {
            src,
            rule_ids: HashMap::new(),
            list_ids: HashMap::new(),
            rules: Vec::new(),
            lists: Vec::new(),
            warnings: Vec::new(),
        };
        // Rules first (they may reference each other in any order).
        let mut parsed = Vec::new();
        for (name, body) in &file.expansion_rules {
            c.rule_ids.insert(name.clone(), c.rules.len());
            c.rules.push(None);
            parsed.push(parse_at(body, src)?);
        }
        let global_rules = c.rule_ids.clone();
        for (i, e) in parsed.iter().enumerate() {
            let node = c.node(e, &global_rules, &HashMap::new())?;
            c.rules[i] = Some(node);
        }
        for (name, def) in &file.lists {
            let list = c.list(def, &global_rules)?;
            c.lists.push(list);
            c.list_ids.insert(name.clone(), c.lists.len() - 1);
        }
        for (name, list) in home_lists(home) {
            c.lists.push(list);
            c.list_ids.insert(name.into(), c.lists.len() - 1);
        }
        check_rule_cycles(&c.rules)?;

        let mut sentences = Vec::new();
        let mut blocks = Vec::new();
        for (intent, entry) in &file.intents {
            let intent: Arc<str> = intent.as_str().into();
            for block in &entry.data {
                let mut rules = c.rule_ids.clone();
                for (name, body) in &block.expansion_rules {
                    let e = parse_at(body, src)?;
                    let node = c.node(&e, &rules.clone(), &HashMap::new())?;
                    c.rules.push(Some(node));
                    rules.insert(name.clone(), c.rules.len() - 1);
                }
                let mut lists = c.list_ids.clone();
                for (name, def) in &block.lists {
                    let l = c.list(def, &rules)?;
                    c.lists.push(l);
                    lists.insert(name.clone(), c.lists.len() - 1);
                }
                let pairs = |m: &BTreeMap<String, Value>| -> Vec<(Arc<str>, Value)> {
                    m.iter()
                        .map(|(k, v)| (Arc::from(k.as_str()), v.clone()))
                        .collect()
                };
                blocks.push(Block {
                    intent: intent.clone(),
                    slots: pairs(&block.slots),
                    requires: pairs(&block.requires_context),
                    excludes: pairs(&block.excludes_context),
                    response: block.response.clone(),
                });
                for s in &block.sentences {
                    let e = parse_at(s, src)?;
                    let node = c.node(&e, &rules, &lists)?;
                    sentences.push(Sentence {
                        node,
                        block: blocks.len() - 1,
                        required: Vec::new(),
                    });
                }
            }
        }
        let rules: Vec<Node> = c
            .rules
            .into_iter()
            .map(|r| r.expect("all rules compiled"))
            .collect();
        let marked: Vec<Node> = rules
            .iter()
            .map(|r| mark_pure(clone_node(r), &rules))
            .collect();
        let rules = marked;
        for s in &mut sentences {
            s.node = mark_pure(
                std::mem::replace(&mut s.node, Node::Seq(Vec::new())),
                &rules,
            );
            s.required = required(&s.node, &rules, 0);
        }
        let mut skip_words: Vec<Vec<String>> = file
            .skip_words
            .iter()
            .map(|w| {
                normalize_phrase(w)
                    .split(' ')
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .filter(|w| !w.iter().all(String::is_empty))
            .collect();
        // Longest phrase first, so "i'd like to" wins over "i'd like".
        skip_words.sort_by_key(|w| std::cmp::Reverse(w.len()));
        Ok(Matcher {
            sentences,
            blocks,
            rules,
            lists: c.lists,
            skip_words,
            area_context: home.satellite_area_name().map(String::from),
            warnings: c.warnings,
        })
    }

    /// Best hit for one normalized variant of the input.
    pub(crate) fn best(&self, input: &Normalized, fuzzy: bool) -> Option<Hit> {
        let mut best: Option<Hit> = None;
        let mut steps = 0usize;
        for s in &self.sentences {
            // The fuzzy stage skips fillers inside literal text, so it only asks for
            // each word of the fragments.
            let present = |r: &str| -> bool {
                input.text.contains(r) || (fuzzy && r.split(' ').all(|w| input.text.contains(w)))
            };
            if !s.required.iter().all(|r| present(r)) {
                continue;
            }
            let block = &self.blocks[s.block];
            let run = Run {
                m: self,
                text: input.text.as_bytes(),
                cased: &input.cased,
                block,
                fuzzy,
            };
            let mut st = State {
                steps,
                ..State::default()
            };
            if let Some(area) = &self.area_context {
                st.ctx.push(("area".into(), Value::String(area.clone())));
            }
            let len = input.text.len();
            run.node(&s.node, 0, &mut st, &mut |st, pos| {
                let trailing = if pos == len {
                    Some(0)
                } else if fuzzy {
                    run.trailing_fillers(pos)
                } else {
                    None
                };
                if let Some(extra) = trailing {
                    st.fillers += extra;
                    let hit = run.finish(st);
                    st.fillers -= extra;
                    if let Some(hit) = hit {
                        if best
                            .as_ref()
                            .is_none_or(|b| (&hit.key, &*hit.intent) < (&b.key, &*b.intent))
                        {
                            best = Some(hit);
                        }
                    }
                }
                false
            });
            steps = st.steps;
            if steps > STEP_BUDGET {
                break;
            }
        }
        best
    }
}

/// `{name}`, `{area}`, `{floor}` from the home: every name and alias, out = the name
/// as written; entity values carry their domain/device class as context.
fn home_lists(home: &Home) -> Vec<(&'static str, SlotList)> {
    let value = |said: &str, name: &str, context: Vec<(Arc<str>, Value)>| {
        let norm = normalize_phrase(said);
        ListValue {
            input: Node::Text(norm.clone().into()),
            out: Some(Value::String(name.to_string())),
            context,
            fuzzy: Some(norm),
        }
    };
    let mut names = Vec::new();
    for e in home.entities.iter().filter(|e| e.exposed) {
        let mut ctx: Vec<(Arc<str>, Value)> =
            vec![("domain".into(), Value::String(e.domain.clone()))];
        if let Some(dc) = &e.device_class {
            ctx.push(("device_class".into(), Value::String(dc.clone())));
        }
        for said in e.names() {
            names.push(value(said, &e.name, ctx.clone()));
        }
    }
    let areas = home
        .areas
        .iter()
        .flat_map(|a| a.names().map(|s| value(s, &a.name, Vec::new())))
        .collect();
    let floors = home
        .floors
        .iter()
        .flat_map(|f| f.names().map(|s| value(s, &f.name, Vec::new())))
        .collect();
    vec![
        ("name", SlotList::Values(names)),
        ("area", SlotList::Values(areas)),
        ("floor", SlotList::Values(floors)),
    ]
}

fn clone_node(n: &Node) -> Node {
    match n {
        Node::Text(t) => Node::Text(t.clone()),
        Node::Seq(items) => Node::Seq(items.iter().map(clone_node).collect()),
        Node::Alt(items) => Node::Alt(items.iter().map(clone_node).collect()),
        Node::Rule(id) => Node::Rule(*id),
        Node::List { list, slot } => Node::List {
            list: *list,
            slot: slot.clone(),
        },
        Node::Pure(inner) => Node::Pure(Box::new(clone_node(inner))),
    }
}

fn check_rule_cycles(rules: &[Option<Node>]) -> Result<()> {
    fn visit(n: &Node, rules: &[Option<Node>], stack: &mut Vec<usize>) -> Result<()> {
        match n {
            Node::Rule(id) => {
                if stack.contains(id) {
                    return Err(Error::Format(
                        "expansion rules refer to themselves (cycle)".into(),
                    ));
                }
                stack.push(*id);
                if let Some(r) = &rules[*id] {
                    visit(r, rules, stack)?;
                }
                stack.pop();
            }
            Node::Seq(items) | Node::Alt(items) => {
                for i in items {
                    visit(i, rules, stack)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
    for (i, r) in rules.iter().enumerate() {
        if let Some(r) = r {
            visit(r, rules, &mut vec![i])?;
        }
    }
    Ok(())
}

#[derive(Default)]
struct State {
    slots: Vec<(Arc<str>, Value, bool)>,
    ctx: Vec<(Arc<str>, Value)>,
    literal: usize,
    wildcards: usize,
    wildcard_len: usize,
    edits: usize,
    fuzzy_len: usize,
    fillers: usize,
    steps: usize,
}

impl State {
    fn ctx_get(&self, key: &str) -> Option<&Value> {
        self.ctx
            .iter()
            .rev()
            .find(|(k, _)| &**k == key)
            .map(|(_, v)| v)
    }
}

type Cont<'k> = dyn FnMut(&mut State, usize) -> bool + 'k;

struct Run<'a> {
    m: &'a Matcher,
    text: &'a [u8],
    cased: &'a str,
    block: &'a Block,
    fuzzy: bool,
}

/// `{"value": x}` → x (HA context values may be wrapped).
fn unwrap_value(v: &Value) -> &Value {
    match v {
        Value::Object(o) => o.get("value").unwrap_or(&Value::Null),
        v => v,
    }
}

/// Does `actual` satisfy `required` (a value, a list of values, or null = anything)?
fn ctx_matches(required: &Value, actual: &Value) -> bool {
    let (required, actual) = (unwrap_value(required), unwrap_value(actual));
    match required {
        Value::Null => true,
        Value::Array(options) => options.contains(actual),
        r => r == actual,
    }
}

impl Run<'_> {
    fn at_word_start(&self, pos: usize) -> bool {
        pos == 0 || self.text.get(pos - 1) == Some(&b' ')
    }

    fn at_word_end(&self, pos: usize) -> bool {
        pos == self.text.len() || self.text[pos] == b' '
    }

    fn node(&self, n: &Node, pos: usize, st: &mut State, k: &mut Cont<'_>) -> bool {
        st.steps += 1;
        if st.steps > STEP_BUDGET {
            return true;
        }
        if self.node_at(n, pos, st, k) {
            return true;
        }
        // Fuzzy stage: a filler word ("uh", a doubled "the") may sit where this slot
        // starts; skip it, at a cost. (Literal text skips fillers itself, on mismatch.)
        // The whole run of fillers is skipped in one go: trying every split of
        // "the the the" would multiply the work for nothing.
        if self.fuzzy && matches!(n, Node::List { .. }) {
            let (mut next, mut skipped) = (pos, 0);
            while let Some(after) = self.after_filler(next) {
                (next, skipped) = (after, skipped + 1);
            }
            if skipped > 0 {
                st.fillers += skipped;
                let stop = self.node_at(n, next, st, k);
                st.fillers -= skipped;
                return stop;
            }
        }
        false
    }

    /// If a filler word starts at `pos` (or just after the space at `pos`), the
    /// position past it in the same phase (at a space, or at a word start).
    fn after_filler(&self, pos: usize) -> Option<usize> {
        let at_space = self.text.get(pos) == Some(&b' ');
        let start = if at_space { pos + 1 } else { pos };
        if !self.at_word_start(start) || start >= self.text.len() {
            return None;
        }
        let end = self.text[start..]
            .iter()
            .position(|&c| c == b' ')
            .map_or(self.text.len(), |i| start + i);
        let word = std::str::from_utf8(&self.text[start..end]).ok()?;
        if !FILLERS.contains(&word) {
            return None;
        }
        Some(if at_space || end == self.text.len() {
            end
        } else {
            end + 1
        })
    }

    /// At the end of a template: the rest of the input is only fillers (fuzzy stage).
    pub(crate) fn trailing_fillers(&self, mut pos: usize) -> Option<usize> {
        let mut n = 0;
        while pos < self.text.len() {
            pos = self.after_filler(pos)?;
            n += 1;
        }
        Some(n)
    }

    fn node_at(&self, n: &Node, pos: usize, st: &mut State, k: &mut Cont<'_>) -> bool {
        match n {
            Node::Text(t) => match self.text_at(t.as_bytes(), pos) {
                Some((end, lit, skipped)) => {
                    st.literal += lit;
                    st.fillers += skipped;
                    let stop = k(st, end);
                    st.literal -= lit;
                    st.fillers -= skipped;
                    stop
                }
                None => false,
            },
            Node::Seq(items) => self.seq(items, pos, st, k),
            Node::Alt(items) => items.iter().any(|i| self.node(i, pos, st, k)),
            Node::Rule(id) => self.node(&self.m.rules[*id], pos, st, k),
            Node::Pure(inner) => {
                let (lit0, fill0) = (st.literal, st.fillers);
                let mut ends: Vec<(usize, usize, usize)> = Vec::new();
                let budget_hit = self.node(inner, pos, st, &mut |st, end| {
                    let r = (end, st.literal - lit0, st.fillers - fill0);
                    if !ends.contains(&r) {
                        ends.push(r);
                    }
                    false
                });
                if budget_hit {
                    return true;
                }
                for (end, lit, fill) in ends {
                    st.literal += lit;
                    st.fillers += fill;
                    let stop = k(st, end);
                    st.literal -= lit;
                    st.fillers -= fill;
                    if stop {
                        return true;
                    }
                }
                false
            }
            Node::List { list, slot } => match &self.m.lists[*list] {
                SlotList::Values(values) => self.values(values, slot, pos, st, k),
                SlotList::Range(r) => self.range(r, slot, pos, st, k),
                SlotList::Wildcard => self.wildcard(slot, pos, st, k),
            },
        }
    }

    fn seq(&self, items: &[Node], pos: usize, st: &mut State, k: &mut Cont<'_>) -> bool {
        match items.split_first() {
            None => k(st, pos),
            Some((first, rest)) => self.node(first, pos, st, &mut |st, p| self.seq(rest, p, st, k)),
        }
    }

    /// Literal text: bytes must be equal; a template space matches one input space, or
    /// nothing where the input is already at a word boundary (so `[the] light` works).
    /// In the fuzzy stage, a filler word where a template word should start is skipped
    /// (only on a mismatch, so a template's own "the" still matches).
    fn text_at(&self, t: &[u8], mut pos: usize) -> Option<(usize, usize, usize)> {
        let (mut lit, mut skipped) = (0, 0);
        let mut i = 0;
        // Where the current template word started, in template and input, and `lit` then.
        let (mut tw, mut pw, mut lw) = (0, pos, 0);
        while i < t.len() {
            let c = t[i];
            if c != b' ' && (i == 0 || t[i - 1] == b' ') {
                (tw, pw, lw) = (i, pos, lit);
            }
            if c == b' ' {
                if self.text.get(pos) == Some(&b' ') {
                    pos += 1;
                } else if !(self.at_word_start(pos) || pos == self.text.len()) {
                    return None;
                }
            } else if self.text.get(pos) == Some(&c) {
                pos += 1;
                lit += 1;
            } else if self.fuzzy && self.at_word_start(pw) && (tw == 0 || t[tw - 1] == b' ') {
                // The input word where this template word started may be a filler
                // ("hmm" against "hour"): skip it and retry the template word.
                pos = self.after_filler(pw)?;
                (i, lit) = (tw, lw);
                skipped += 1;
                continue;
            } else {
                return None;
            }
            i += 1;
        }
        Some((pos, lit, skipped))
    }

    fn value_allowed(&self, ctx: &[(Arc<str>, Value)]) -> bool {
        let get = |key: &str| ctx.iter().find(|(k, _)| &**k == key).map(|(_, v)| v);
        self.block
            .requires
            .iter()
            .all(|(k, req)| get(k).is_none_or(|a| ctx_matches(req, a)))
            && self
                .block
                .excludes
                .iter()
                .all(|(k, ex)| get(k).is_none_or(|a| !ctx_matches(ex, a)))
    }

    fn push_slot(&self, st: &mut State, slot: &Arc<str>, v: &ListValue, start: usize, end: usize) {
        let value = v
            .out
            .clone()
            .unwrap_or_else(|| Value::String(self.cased[start..end].trim().to_string()));
        st.slots.push((slot.clone(), value, false));
        st.ctx.extend(v.context.iter().cloned());
    }

    fn pop_slot(&self, st: &mut State, v: &ListValue) {
        st.slots.pop();
        st.ctx.truncate(st.ctx.len() - v.context.len());
    }

    fn values(
        &self,
        values: &[ListValue],
        slot: &Arc<str>,
        pos: usize,
        st: &mut State,
        k: &mut Cont<'_>,
    ) -> bool {
        for v in values {
            if !self.value_allowed(&v.context) {
                continue;
            }
            let stop = self.node(&v.input, pos, st, &mut |st, end| {
                if end == pos {
                    return false;
                }
                self.push_slot(st, slot, v, pos, end);
                let stop = k(st, end);
                self.pop_slot(st, v);
                stop
            });
            if stop {
                return true;
            }
            if self.fuzzy && self.fuzzy_value(v, slot, pos, st, k) {
                return true;
            }
        }
        false
    }

    /// A home name said slightly wrong: spans of about the name's word count (plus
    /// room for fillers said inside it), within the length-scaled edit threshold.
    fn fuzzy_value(
        &self,
        v: &ListValue,
        slot: &Arc<str>,
        pos: usize,
        st: &mut State,
        k: &mut Cont<'_>,
    ) -> bool {
        let Some(name) = &v.fuzzy else { return false };
        if !self.at_word_start(pos) || pos >= self.text.len() {
            return false;
        }
        let budget = max_edits(name.len());
        let name_words: Vec<&str> = name.split(' ').collect();
        let mut end = pos;
        for n in 1..=name_words.len() + 3 {
            while end < self.text.len() && self.text[end] != b' ' {
                end += 1;
            }
            if n + 1 >= name_words.len() {
                let span = std::str::from_utf8(&self.text[pos..end]).unwrap_or("");
                let kept: Vec<&str> = span
                    .split(' ')
                    .filter(|w| !FILLERS.contains(w) || name_words.contains(w))
                    .collect();
                let removed = span.split(' ').count() - kept.len();
                let first_kept = kept.first().is_some_and(|w| span.starts_with(w));
                if let (true, Some(d)) = (
                    first_kept,
                    bounded_levenshtein(kept.join(" ").as_bytes(), name.as_bytes(), budget),
                ) {
                    if d + removed > 0 {
                        self.push_slot(st, slot, v, pos, end);
                        st.edits += d;
                        st.fillers += removed;
                        st.fuzzy_len += name.len();
                        let stop = k(st, end);
                        st.edits -= d;
                        st.fillers -= removed;
                        st.fuzzy_len -= name.len();
                        self.pop_slot(st, v);
                        if stop {
                            return true;
                        }
                    }
                }
            }
            if end >= self.text.len() {
                break;
            }
            end += 1;
        }
        false
    }

    fn range(
        &self,
        r: &RangeList,
        slot: &Arc<str>,
        pos: usize,
        st: &mut State,
        k: &mut Cont<'_>,
    ) -> bool {
        if !self.at_word_start(pos) {
            return false;
        }
        let mut candidates: Vec<(f64, usize)> = Vec::new();
        let digits = self.text[pos..]
            .iter()
            .take_while(|c| c.is_ascii_digit() || **c == b'.')
            .count();
        if digits > 0 {
            let s = std::str::from_utf8(&self.text[pos..pos + digits]).unwrap_or("");
            if let Ok(v) = s.trim_end_matches('.').parse::<f64>() {
                candidates.push((v, pos + s.trim_end_matches('.').len()));
            }
        } else {
            let rest = std::str::from_utf8(&self.text[pos..]).unwrap_or("");
            let words: Vec<&str> = rest.split(' ').take(10).collect();
            let mut offsets = Vec::with_capacity(words.len());
            let mut off = pos;
            for w in &words {
                off += w.len();
                offsets.push(off);
                off += 1;
            }
            let parsed = parse_number_words(&words);
            let used = parsed.last().map_or(0, |&(_, n)| n);
            for &(v, n) in &parsed {
                candidates.push((v as f64, offsets[n - 1]));
            }
            // A number word glued to a unit ("four thousand eight hundredk"): the
            // next word's longest number-word prefix may end the number.
            if let Some(next) = words.get(used) {
                let start = offsets[used] - next.len();
                for cut in (1..next.len()).rev().filter(|&c| next.is_char_boundary(c)) {
                    let mut w2 = words[..used].to_vec();
                    w2.push(&next[..cut]);
                    if let Some(&(v, n)) = parse_number_words(&w2).last() {
                        if n == used + 1 {
                            candidates.push((v as f64, start + cut));
                            break;
                        }
                    }
                }
            }
        }
        for (v, end) in candidates {
            if v < r.from || v > r.to {
                continue;
            }
            let steps = (v - r.from) / r.step;
            let on_step = (steps - steps.round()).abs() < 1e-9;
            let half = r.fractions && ((v * 2.0) - (v * 2.0).round()).abs() < 1e-9;
            if !(on_step || half) {
                continue;
            }
            let out = v * r.multiplier;
            let value = if out.fract() == 0.0 && out.abs() < 1e15 {
                Value::from(out as i64)
            } else {
                serde_json::Number::from_f64(out).map_or(Value::Null, Value::Number)
            };
            st.slots.push((slot.clone(), value, false));
            let stop = k(st, end);
            st.slots.pop();
            if stop {
                return true;
            }
        }
        false
    }

    fn wildcard(&self, slot: &Arc<str>, pos: usize, st: &mut State, k: &mut Cont<'_>) -> bool {
        if !self.at_word_start(pos) || pos >= self.text.len() {
            return false;
        }
        for end in pos + 1..=self.text.len() {
            if !self.at_word_end(end) {
                continue;
            }
            let value = Value::String(self.cased[pos..end].trim().to_string());
            st.slots.push((slot.clone(), value, true));
            st.wildcards += 1;
            st.wildcard_len += end - pos;
            let stop = k(st, end);
            st.wildcards -= 1;
            st.wildcard_len -= end - pos;
            st.slots.pop();
            if stop {
                return true;
            }
        }
        false
    }

    /// A complete parse: check context, add fixed and context slots.
    fn finish(&self, st: &State) -> Option<Hit> {
        let b = self.block;
        for (key, ex) in &b.excludes {
            if st.ctx_get(key).is_some_and(|a| ctx_matches(ex, a)) {
                return None;
            }
        }
        let mut from_context = Vec::new();
        for (key, req) in &b.requires {
            let actual = st.ctx_get(key)?;
            if !ctx_matches(req, actual) {
                return None;
            }
            let copy = match req.get("slot") {
                Some(Value::Bool(true)) => Some(key.to_string()),
                Some(Value::String(s)) => Some(s.clone()),
                _ => None,
            };
            if let Some(slot) = copy {
                from_context.push((slot, unwrap_value(actual).clone()));
            }
        }
        let mut slots: BTreeMap<String, Value> = BTreeMap::new();
        for (name, value, _) in &st.slots {
            slots.insert(name.to_string(), value.clone());
        }
        let matched: Vec<String> = slots.keys().cloned().collect();
        for (name, value) in &b.slots {
            if !matched.iter().any(|m| m == &**name) {
                slots.insert(name.to_string(), value.clone());
            }
        }
        for (name, value) in from_context {
            if !matched.contains(&name) {
                slots.entry(name).or_insert(value);
            }
        }
        Some(Hit {
            intent: b.intent.clone(),
            slots,
            response: b.response.clone(),
            key: (
                st.edits + st.fillers,
                st.wildcards,
                -(st.literal as isize),
                st.wildcard_len,
            ),
            fillers: st.fillers,
            fuzzy_len: st.fuzzy_len,
            edits: st.edits,
        })
    }
}
