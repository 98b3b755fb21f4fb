//! The ChatML chat template (SmolLM2, Qwen2), applied in Rust:
//! `<|im_start|>{role}\n{content}<|im_end|>\n` per message, then
//! `<|im_start|>assistant\n` to prompt the reply.
use crate::{Error, Result};

/// Who said something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Instructions for the assistant.
    System,
    /// The person.
    User,
    /// The model.
    Assistant,
}

impl Role {
    /// The name in the template.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "system" => Ok(Role::System),
            "user" => Ok(Role::User),
            "assistant" => Ok(Role::Assistant),
            _ => Err(Error::Invalid(format!(
                "unknown chat role {s:?} (expected system, user or assistant)"
            ))),
        }
    }
}

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatMessage {
    /// Speaker.
    pub role: Role,
    /// Text.
    pub content: String,
}

impl ChatMessage {
    /// A message.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// The ChatML template, with the default system prompt the model's own template
/// inserts when a conversation has none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChatTemplate {
    /// Used when the first message is not a system message.
    pub default_system: Option<String>,
}

impl ChatTemplate {
    /// The template for a model's Jinja chat template source. Only ChatML
    /// templates are supported; `None` (no template shipped) is taken as ChatML.
    pub fn from_model(jinja: Option<&str>) -> Result<Self> {
        let Some(src) = jinja else {
            return Ok(Self::default());
        };
        if !src.contains("<|im_start|>") {
            return Err(Error::Invalid(
                "unsupported chat template: only ChatML (<|im_start|>) is implemented".into(),
            ));
        }
        Ok(Self {
            default_system: default_system_prompt(src),
        })
    }

    /// Render `messages`, ending with the assistant prompt when `add_generation_prompt`.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> String {
        let mut out = String::new();
        if let (Some(sys), Some(first)) = (&self.default_system, messages.first()) {
            if first.role != Role::System {
                push(&mut out, Role::System, sys);
            }
        }
        for m in messages {
            push(&mut out, m.role, &m.content);
        }
        if add_generation_prompt {
            out.push_str("<|im_start|>assistant\n");
        }
        out
    }
}

fn push(out: &mut String, role: Role, content: &str) {
    out.push_str("<|im_start|>");
    out.push_str(role.as_str());
    out.push('\n');
    out.push_str(content);
    out.push_str("<|im_end|>\n");
}

/// The literal default system message of a ChatML Jinja template, e.g. SmolLM2's
/// `'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by
/// Hugging Face<|im_end|>\n'` (the `\n` written as an escape in the Jinja string).
/// Every `<|im_start|>system` in the template is tried: Qwen2.5's first one is built
/// from variables (tools branch), its second one is the literal default.
fn default_system_prompt(src: &str) -> Option<String> {
    let src = src.replace("\\n", "\n");
    let start = "<|im_start|>system\n";
    src.match_indices(start).find_map(|(at, _)| {
        let rest = &src[at + start.len()..];
        let text = &rest[..rest.find("<|im_end|>")?];
        // A message built from variables has no literal default.
        let literal = !text.is_empty() && !text.contains(['{', '}', '\'', '"', '+']);
        literal.then(|| text.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    #[test]
    fn smollm2_default_system_prompt() {
        let t = ChatTemplate::from_model(Some(SMOLLM2)).unwrap();
        assert_eq!(
            t.default_system.as_deref(),
            Some("You are a helpful AI assistant named SmolLM, trained by Hugging Face")
        );
        let s = t.render(
            &[ChatMessage::new(
                Role::User,
                "Give me three tips for staying healthy.",
            )],
            true,
        );
        // Exactly the golden prompt of /work/shared/golden.
        assert_eq!(
            s,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nGive me three tips for staying healthy.<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn explicit_system_replaces_default_and_turns_accumulate() {
        let t = ChatTemplate::from_model(Some(SMOLLM2)).unwrap();
        let msgs = [
            ChatMessage::new(Role::System, "Be brief."),
            ChatMessage::new(Role::User, "Hi"),
            ChatMessage::new(Role::Assistant, "Hello!"),
            ChatMessage::new(Role::User, "Bye"),
        ];
        let s = t.render(&msgs, false);
        assert_eq!(
            s,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
        );
        // A longer conversation renders to an extension of the shorter one (what
        // makes KV-cache reuse between turns possible).
        assert!(t
            .render(&msgs, true)
            .starts_with(&t.render(&msgs[..2], false)));
    }

    #[test]
    fn unknown_role_and_template_are_errors() {
        assert!("tool".parse::<Role>().is_err());
        assert_eq!("user".parse::<Role>().unwrap(), Role::User);
        assert!(ChatTemplate::from_model(Some("{{ bos_token }}[INST] …")).is_err());
        assert_eq!(ChatTemplate::from_model(None).unwrap().default_system, None);
        // Qwen2-style template with a variable system message: no literal default.
        let qwen = "{% if messages[0]['role'] == 'system' %}{{ '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}{% endif %}";
        assert_eq!(
            ChatTemplate::from_model(Some(qwen)).unwrap().default_system,
            None
        );
    }

    #[test]
    fn qwen25_default_system_prompt_is_found_past_the_tools_branch() {
        let qwen25 = r#"{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] }}{%- endif %}
    {{- "<|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}"#;
        let t = ChatTemplate::from_model(Some(qwen25)).unwrap();
        assert_eq!(
            t.default_system.as_deref(),
            Some("You are Qwen, created by Alibaba Cloud. You are a helpful assistant.")
        );
    }
}
