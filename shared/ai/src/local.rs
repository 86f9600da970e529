//! Models that run in-process, from files, with no network: a sentence embedder
//! (all-MiniLM-L6-v2, a BERT encoder) and a small instruct model (SmolLM2-135M-Instruct, a
//! llama-family model quantized to GGUF). Inference is candle's, in pure Rust, on the CPU.
//!
//! A model directory holds a folder per model:
//!
//! - `all-minilm-l6-v2/`: `config.json`, `model.safetensors` and `tokenizer.json`, as the
//!   sentence-transformers release has them;
//! - `smollm2-135m-instruct/`: `SmolLM2-135M-Instruct.Q4_1.gguf`. The GGUF carries the
//!   model's vocabulary and merges; the tokenizer is built from them.
//!
//! [`Local::discover`] loads what is there. Embeddings follow sentence-transformers exactly:
//! inputs cut at 256 tokens, padded to the longest of the batch, the token vectors averaged
//! over the attention mask (padding counts for nothing) and normalised to unit length. Chat
//! follows the model's ChatML template; one reply is generated at a time, on a blocking
//! thread, its tokens streamed as they come. The local model calls no tools: tool
//! definitions are not offered to it.

use std::collections::HashMap;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::gguf_file;
use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use candle_transformers::models::quantized_llama::{MAX_SEQ_LEN, ModelWeights};
use serde_json::json;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};
use tokio::sync::{Semaphore, mpsc};

use crate::{
    ChatRequest, Event, EventStream, Part, Provider, ProviderError, Role, StopReason, Usage,
};

/// The embedding model's name, and its folder in a model directory.
pub const EMBEDDING_MODEL: &str = "all-minilm-l6-v2";
/// The chat model's name, and its folder in a model directory.
pub const CHAT_MODEL: &str = "smollm2-135m-instruct";
/// The chat model's weights file in its folder.
pub const CHAT_WEIGHTS: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The longest input the embedder reads, in tokens (sentence-transformers' `max_seq_length`).
const EMBEDDING_MAX_TOKENS: usize = 256;
/// Texts embedded in one forward pass.
const EMBEDDING_BATCH: usize = 32;
/// The reply budget when a request sets none.
const DEFAULT_MAX_OUTPUT_TOKENS: u32 = 512;
/// Repeated tokens are penalised over this many of the last tokens (small models loop
/// without it).
const REPEAT_WINDOW: usize = 64;
const REPEAT_PENALTY: f32 = 1.1;
/// The system prompt when a request has none.
const DEFAULT_SYSTEM: &str = "You are Jarvis, a helpful personal assistant.";

fn load_error(what: impl Display) -> ProviderError {
    ProviderError::Unreachable {
        message: format!("local model: {what}"),
    }
}

/// An inference failure: logged (it carries no secret), answered as the provider failing.
fn inference_error(what: impl Display) -> ProviderError {
    tracing::error!(error = %what, "local model inference failed");
    ProviderError::Failed { status: 500 }
}

/// The sentence embedder.
pub struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

impl Embedder {
    /// Loads the embedder from its folder.
    pub fn load(dir: &Path) -> Result<Self, ProviderError> {
        let device = Device::Cpu;
        let config: BertConfig =
            serde_json::from_slice(&std::fs::read(dir.join("config.json")).map_err(load_error)?)
                .map_err(load_error)?;
        let weights = std::fs::read(dir.join("model.safetensors")).map_err(load_error)?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(load_error)?;
        let model = BertModel::load(vb, &config).map_err(load_error)?;
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).map_err(load_error)?;
        // The released tokenizer pads every input to 128 and cuts there; sentence-transformers
        // pads to the batch's longest and cuts at 256.
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: EMBEDDING_MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(load_error)?;
        Ok(Self {
            model,
            tokenizer,
            device,
        })
    }

    /// Unit-length vectors of `texts`, in order (blocking: call it off the async threads).
    ///
    /// Texts are batched by length, so a batch pads its short texts to little more than
    /// their own length; the vectors come back in the order of `texts`.
    pub fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ProviderError> {
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let mut vectors = vec![Vec::new(); texts.len()];
        for batch in order.chunks(EMBEDDING_BATCH) {
            let inputs: Vec<String> = batch.iter().map(|&i| texts[i].clone()).collect();
            let embedded = self.embed_batch(&inputs).map_err(inference_error)?;
            for (&i, vector) in batch.iter().zip(embedded) {
                vectors[i] = vector;
            }
        }
        Ok(vectors)
    }

    fn embed_batch(
        &self,
        texts: &[String],
    ) -> Result<Vec<Vec<f32>>, Box<dyn std::error::Error + Send + Sync>> {
        let encodings = self.tokenizer.encode_batch(texts.to_vec(), true)?;
        let ids: Vec<Tensor> = encodings
            .iter()
            .map(|e| Tensor::new(e.get_ids(), &self.device))
            .collect::<Result<_, _>>()?;
        let masks: Vec<Tensor> = encodings
            .iter()
            .map(|e| Tensor::new(e.get_attention_mask(), &self.device))
            .collect::<Result<_, _>>()?;
        let ids = Tensor::stack(&ids, 0)?;
        let mask = Tensor::stack(&masks, 0)?;
        let types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;
        // Mean over the real tokens only.
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean
            .sqr()?
            .sum_keepdim(D::Minus1)?
            .sqrt()?
            .clamp(1e-12f32, f32::MAX)?;
        Ok(mean.broadcast_div(&norms)?.to_vec2::<f32>()?)
    }
}

/// The instruct model and its tokenizer.
pub struct Chat {
    weights: ModelWeights,
    tokenizer: Tokenizer,
    /// Tokens that end a turn.
    end: Vec<u32>,
    device: Device,
    /// One reply at a time: each already uses every core.
    turn: Semaphore,
}

impl Chat {
    /// Loads the model from its GGUF file, and builds its tokenizer from the file's metadata.
    pub fn load(path: &Path) -> Result<Self, ProviderError> {
        let device = Device::Cpu;
        let mut file = std::fs::File::open(path).map_err(load_error)?;
        let content = gguf_file::Content::read(&mut file).map_err(load_error)?;
        let tokenizer = gguf_tokenizer(&content.metadata)?;
        let mut end = Vec::new();
        for token in ["<|im_end|>", "<|endoftext|>"] {
            end.extend(tokenizer.token_to_id(token));
        }
        if let Some(eos) = content
            .metadata
            .get("tokenizer.ggml.eos_token_id")
            .and_then(|v| v.to_u32().ok())
        {
            end.push(eos);
        }
        let weights = ModelWeights::from_gguf(content, &mut file, &device).map_err(load_error)?;
        Ok(Self {
            weights,
            tokenizer,
            end,
            device,
            turn: Semaphore::new(1),
        })
    }

    /// The prompt of `request` in the model's ChatML template, ending where the assistant's
    /// turn begins.
    fn prompt(request: &ChatRequest) -> Result<String, ProviderError> {
        let mut prompt = String::new();
        let system = request.system.as_deref().unwrap_or(DEFAULT_SYSTEM);
        prompt.push_str(&format!("<|im_start|>system\n{system}<|im_end|>\n"));
        for message in &request.messages {
            let role = match message.role {
                Role::User => "user",
                Role::Assistant => "assistant",
                Role::Tool => "tool",
            };
            let mut text = String::new();
            for part in &message.parts {
                match part {
                    Part::Text { text: t } => text.push_str(t),
                    Part::Image { .. } => {
                        return Err(ProviderError::Unsupported {
                            what: "image input".into(),
                        });
                    }
                    Part::ToolCall {
                        name, arguments, ..
                    } => text.push_str(&format!("[called {name} with {arguments}]")),
                    Part::ToolResult { content, .. } => text.push_str(content),
                }
            }
            prompt.push_str(&format!("<|im_start|>{role}\n{text}<|im_end|>\n"));
        }
        prompt.push_str("<|im_start|>assistant\n");
        Ok(prompt)
    }

    /// Generates a reply to `prompt` (blocking), sending its events to `events` until the
    /// reply ends or the receiver is gone.
    fn generate(
        &self,
        prompt: &[u32],
        request: &ChatRequest,
        events: &mpsc::Sender<Event>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let mut model = self.weights.clone();
        let max_output = request
            .max_output_tokens
            .unwrap_or(DEFAULT_MAX_OUTPUT_TOKENS) as usize;
        let max_output = max_output.min(MAX_SEQ_LEN.saturating_sub(prompt.len()));
        let sampling = match request.temperature {
            Some(t) if t > 0.0 => Sampling::TopP {
                p: 0.9,
                temperature: f64::from(t),
            },
            _ => Sampling::ArgMax,
        };
        let mut sampler = LogitsProcessor::from_sampling(fastrand::u64(..), sampling);
        let mut usage = Usage {
            input_tokens: prompt.len() as u64,
            output_tokens: 0,
        };
        let mut context: Vec<u32> = prompt.to_vec();
        let mut generated: Vec<u32> = Vec::new();
        let mut text = Text::new(&request.stop);
        let mut input = Tensor::new(prompt, &self.device)?.unsqueeze(0)?;
        let mut position = 0;
        let stop_reason = loop {
            if generated.len() >= max_output {
                break StopReason::MaxTokens;
            }
            let logits = model.forward(&input, position)?.squeeze(0)?;
            position += input.dim(1)?;
            let window = context.len().saturating_sub(REPEAT_WINDOW);
            let logits = candle_transformers::utils::apply_repeat_penalty(
                &logits,
                REPEAT_PENALTY,
                &context[window..],
            )?;
            let token = sampler.sample(&logits)?;
            if self.end.contains(&token) {
                break StopReason::EndTurn;
            }
            generated.push(token);
            context.push(token);
            usage.output_tokens += 1;
            let decoded = self.tokenizer.decode(&generated, true)?;
            let (delta, stopped) = text.advance(&decoded);
            if !delta.is_empty()
                && events
                    .blocking_send(Event::TextDelta { text: delta })
                    .is_err()
            {
                return Ok(());
            }
            if stopped {
                break StopReason::StopSequence;
            }
            input = Tensor::new(&[token], &self.device)?.unsqueeze(0)?;
        };
        let rest = text.finish();
        if !rest.is_empty() {
            let _ = events.blocking_send(Event::TextDelta { text: rest });
        }
        let _ = events.blocking_send(Event::Usage(usage));
        let _ = events.blocking_send(Event::Done { stop_reason });
        Ok(())
    }
}

/// The text of a reply as it grows: what may be sent yet, holding back an incomplete
/// character and anything that could be the start of a stop sequence.
struct Text<'a> {
    stop: &'a [String],
    sent: usize,
    whole: String,
}

impl<'a> Text<'a> {
    fn new(stop: &'a [String]) -> Self {
        Self {
            stop,
            sent: 0,
            whole: String::new(),
        }
    }

    /// Takes the reply decoded so far; answers the new text that can be sent and whether a
    /// stop sequence ended the reply.
    fn advance(&mut self, decoded: &str) -> (String, bool) {
        // A token that ends inside a multi-byte character decodes to U+FFFD; wait for the
        // rest of it.
        if decoded.ends_with('\u{FFFD}') {
            return (String::new(), false);
        }
        self.whole = decoded.to_owned();
        if let Some(at) = self
            .stop
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| self.whole.find(s.as_str()))
            .min()
        {
            self.whole.truncate(at);
            return (self.take(self.whole.len()), true);
        }
        let hold = self
            .stop
            .iter()
            .flat_map(|s| {
                (1..s.len())
                    .filter(|n| s.is_char_boundary(*n))
                    .filter(|n| self.whole.ends_with(&s[..*n]))
            })
            .max()
            .unwrap_or(0);
        (self.take(self.whole.len() - hold), false)
    }

    fn take(&mut self, upto: usize) -> String {
        if upto <= self.sent || !self.whole.is_char_boundary(upto) {
            return String::new();
        }
        let delta = self.whole[self.sent..upto].to_owned();
        self.sent = upto;
        delta
    }

    /// The held-back rest, when the reply ended without a stop sequence.
    fn finish(&mut self) -> String {
        let end = self.whole.len();
        self.take(end)
    }
}

/// A byte-level BPE tokenizer from a GGUF file's `tokenizer.ggml.*` metadata (the GPT-2
/// family's scheme, as SmolLM2 uses: digits split one by one, then GPT-2's pattern).
fn gguf_tokenizer(
    metadata: &HashMap<String, gguf_file::Value>,
) -> Result<Tokenizer, ProviderError> {
    let strings = |key: &str| -> Result<Vec<String>, ProviderError> {
        metadata
            .get(key)
            .ok_or_else(|| load_error(format!("no {key} in the model file")))?
            .to_vec()
            .map_err(load_error)?
            .iter()
            .map(|v| v.to_string().cloned().map_err(load_error))
            .collect()
    };
    let model = metadata
        .get("tokenizer.ggml.model")
        .and_then(|v| v.to_string().ok())
        .map(String::as_str);
    if model != Some("gpt2") {
        return Err(load_error(format!(
            "tokenizer {model:?} is not byte-level BPE"
        )));
    }
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges = strings("tokenizer.ggml.merges")?;
    let vocab: serde_json::Map<String, serde_json::Value> = tokens
        .iter()
        .enumerate()
        .map(|(id, token)| (token.clone(), json!(id)))
        .collect();
    // Tokens of the form <|…|> are the template's markers: matched whole, never split.
    let added: Vec<serde_json::Value> = tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| t.starts_with("<|") && t.ends_with("|>"))
        .map(|(id, t)| {
            json!({"id": id, "content": t, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
        ]},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges}
    });
    let bytes = serde_json::to_vec(&spec).map_err(load_error)?;
    Tokenizer::from_bytes(bytes).map_err(load_error)
}

/// The local provider: the chat model, the embedder, or both.
pub struct Local {
    chat: Option<Arc<Chat>>,
    embedder: Option<Arc<Embedder>>,
}

impl Local {
    /// The models found in `dir`, loaded; `None` when neither is there. A model whose files
    /// are present but do not load is an error.
    pub fn discover(dir: &Path) -> Result<Option<Self>, ProviderError> {
        let embedder = Self::embedder_dir(dir)
            .map(|d| Embedder::load(&d))
            .transpose()?;
        let chat = Self::chat_file(dir).map(|f| Chat::load(&f)).transpose()?;
        if chat.is_none() && embedder.is_none() {
            return Ok(None);
        }
        Ok(Some(Self {
            chat: chat.map(Arc::new),
            embedder: embedder.map(Arc::new),
        }))
    }

    /// Whether both models' files are in `dir` (nothing is loaded).
    pub fn installed(dir: &Path) -> bool {
        Self::embedder_dir(dir).is_some() && Self::chat_file(dir).is_some()
    }

    fn embedder_dir(dir: &Path) -> Option<PathBuf> {
        let d = dir.join(EMBEDDING_MODEL);
        ["config.json", "model.safetensors", "tokenizer.json"]
            .iter()
            .all(|f| d.join(f).is_file())
            .then_some(d)
    }

    fn chat_file(dir: &Path) -> Option<PathBuf> {
        let f = dir.join(CHAT_MODEL).join(CHAT_WEIGHTS);
        f.is_file().then_some(f)
    }

    /// Whether the chat model is loaded.
    pub fn has_chat(&self) -> bool {
        self.chat.is_some()
    }

    /// Whether the embedder is loaded.
    pub fn has_embedder(&self) -> bool {
        self.embedder.is_some()
    }

    /// Tokens of `text` for the chat model, when it is loaded.
    pub fn count_tokens(&self, text: &str) -> Option<usize> {
        let chat = self.chat.as_ref()?;
        chat.tokenizer
            .encode(text, false)
            .ok()
            .map(|e| e.get_ids().len())
    }
}

#[async_trait::async_trait]
impl Provider for Local {
    fn name(&self) -> &str {
        "local"
    }

    fn count_tokens(&self, model: &str, text: &str) -> Option<u64> {
        if model != CHAT_MODEL {
            return None;
        }
        Local::count_tokens(self, text).and_then(|n| u64::try_from(n).ok())
    }

    async fn stream(&self, request: ChatRequest) -> Result<EventStream, ProviderError> {
        let Some(chat) = self.chat.clone() else {
            return Err(ProviderError::Unsupported {
                what: "chat without the local chat model".into(),
            });
        };
        if request.model != CHAT_MODEL {
            return Err(ProviderError::Refused {
                status: 404,
                message: format!("the local chat model is {CHAT_MODEL}"),
            });
        }
        let prompt = Chat::prompt(&request)?;
        let ids = chat
            .tokenizer
            .encode(prompt, false)
            .map_err(inference_error)?
            .get_ids()
            .to_vec();
        if ids.len() >= MAX_SEQ_LEN {
            return Err(ProviderError::Refused {
                status: 400,
                message: format!(
                    "the prompt has {} tokens; the local model reads at most {MAX_SEQ_LEN}",
                    ids.len()
                ),
            });
        }
        let (sender, receiver) = mpsc::channel(64);
        tokio::spawn(async move {
            let Ok(_turn) = chat.turn.acquire().await else {
                return;
            };
            let errors = sender.clone();
            let worker = Arc::clone(&chat);
            let generated = tokio::task::spawn_blocking(move || {
                worker
                    .generate(&ids, &request, &sender)
                    .map_err(|e| e.to_string())
            })
            .await;
            let failure = match generated {
                Ok(Ok(())) => return,
                Ok(Err(message)) => message,
                Err(join) => join.to_string(),
            };
            let _ = errors.send(Event::Error(inference_error(failure))).await;
        });
        Ok(Box::pin(receiver_stream(receiver)))
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ProviderError> {
        let Some(embedder) = self.embedder.clone() else {
            return Err(ProviderError::Unsupported {
                what: "embedding without the local embedder".into(),
            });
        };
        let texts = texts.to_vec();
        tokio::task::spawn_blocking(move || embedder.embed(&texts))
            .await
            .map_err(inference_error)?
    }
}

/// The receiver as a stream of events.
fn receiver_stream(mut receiver: mpsc::Receiver<Event>) -> impl futures_util::Stream<Item = Event> {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stops(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn text_holds_back_a_possible_stop_sequence_and_cuts_at_it() {
        let stop = stops(&["\nUser:"]);
        let mut text = Text::new(&stop);
        assert_eq!(text.advance("Hello"), ("Hello".into(), false));
        assert_eq!(text.advance("Hello\nUs"), (String::new(), false));
        assert_eq!(text.advance("Hello\nUser: hi"), (String::new(), true));
        assert_eq!(text.whole, "Hello");
    }

    #[test]
    fn text_releases_what_turned_out_not_to_be_a_stop_sequence() {
        let stop = stops(&["\nUser:"]);
        let mut text = Text::new(&stop);
        assert_eq!(text.advance("a\nU"), ("a".into(), false));
        assert_eq!(text.advance("a\nUnder"), ("\nUnder".into(), false));
        assert_eq!(text.finish(), "");
    }

    #[test]
    fn text_waits_for_the_rest_of_a_split_character() {
        let mut text = Text::new(&[]);
        assert_eq!(text.advance("caf\u{FFFD}"), (String::new(), false));
        assert_eq!(text.advance("café"), ("café".into(), false));
    }

    #[test]
    fn the_prompt_follows_chatml_and_refuses_images() {
        let request = ChatRequest {
            model: CHAT_MODEL.into(),
            system: Some("Be brief.".into()),
            messages: vec![
                crate::Message::user("Hi"),
                crate::Message::assistant("Hello"),
            ],
            ..ChatRequest::default()
        };
        assert_eq!(
            Chat::prompt(&request).expect("text only"),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
             <|im_start|>assistant\nHello<|im_end|>\n<|im_start|>assistant\n"
        );
        let with_image = ChatRequest {
            messages: vec![crate::Message {
                role: Role::User,
                parts: vec![Part::Image {
                    media_type: "image/png".into(),
                    data: String::new(),
                }],
            }],
            ..request
        };
        assert!(matches!(
            Chat::prompt(&with_image),
            Err(ProviderError::Unsupported { .. })
        ));
    }
}
