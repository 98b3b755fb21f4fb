//! The engine on a Hearth model file: [`ModelFile`] lends its tensors as
//! [`Weights`] without copying anything.
use crate::llm::engine::{Engine, EngineOptions, ModelInfo, WeightSource};
use crate::llm::weights::{Hparams, LayerWeights, Matrix, Weights};
use crate::model::{ModelConfig, ModelFile, TensorData};
use crate::{Error, Result};
use std::sync::Arc;

impl Hparams {
    /// The forward pass's view of a model config.
    pub fn from_config(c: &ModelConfig) -> Hparams {
        Hparams {
            vocab_size: c.vocab_size,
            dim: c.hidden_size,
            n_layers: c.n_layers,
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: c.head_dim,
            ffn_dim: c.ffn_dim,
            rope_theta: c.rope_theta,
            rope_style: c.rope_style,
            norm_eps: c.norm_eps,
            context_length: c.context_length,
        }
    }
}

fn matrix<'a>(m: &'a ModelFile, name: &str) -> Result<Matrix<'a>> {
    let t = m.tensor(name)?;
    Ok(match t.data {
        TensorData::Packed(p) => Matrix::Packed(p),
        TensorData::F32(d) => Matrix::f32(t.rows, t.cols, d)?,
        TensorData::F16(d) => {
            if t.rows.checked_mul(t.cols) != Some(d.len()) {
                return Err(Error::Format(format!(
                    "tensor {name}: {}×{} but {} values",
                    t.rows,
                    t.cols,
                    d.len()
                )));
            }
            Matrix::F16 {
                rows: t.rows,
                cols: t.cols,
                data: d,
            }
        }
    })
}

fn vector<'a>(m: &'a ModelFile, name: &str) -> Result<&'a [f32]> {
    match m.tensor(name)?.data {
        TensorData::F32(d) => Ok(d),
        _ => Err(Error::Format(format!(
            "tensor {name}: norm weights and biases must be f32"
        ))),
    }
}

impl WeightSource for ModelFile {
    fn weights(&self) -> Result<Weights<'_>> {
        let c = self.config();
        c.validate()?;
        let layers = (0..c.n_layers)
            .map(|i| {
                let n = |s: &str| format!("blk.{i}.{s}");
                let bias = |s: &str| {
                    if c.qkv_bias {
                        vector(self, &n(s)).map(Some)
                    } else {
                        Ok(None)
                    }
                };
                Ok(LayerWeights {
                    attn_norm: vector(self, &n("attn_norm.weight"))?,
                    wq: matrix(self, &n("attn_q.weight"))?,
                    wk: matrix(self, &n("attn_k.weight"))?,
                    wv: matrix(self, &n("attn_v.weight"))?,
                    bq: bias("attn_q.bias")?,
                    bk: bias("attn_k.bias")?,
                    bv: bias("attn_v.bias")?,
                    wo: matrix(self, &n("attn_output.weight"))?,
                    ffn_norm: vector(self, &n("ffn_norm.weight"))?,
                    w_gate: matrix(self, &n("ffn_gate.weight"))?,
                    w_up: matrix(self, &n("ffn_up.weight"))?,
                    w_down: matrix(self, &n("ffn_down.weight"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let token_embd = matrix(self, "token_embd.weight")?;
        let output = if c.tied_embeddings {
            token_embd
        } else {
            matrix(self, "output.weight")?
        };
        Ok(Weights {
            hp: Hparams::from_config(c),
            token_embd,
            layers,
            output_norm: vector(self, "output_norm.weight")?,
            output,
        })
    }

    fn info(&self) -> ModelInfo {
        let c = self.config();
        ModelInfo {
            name: c.name.clone(),
            bos_id: c.bos_id,
            eos_id: c.eos_id,
            stop_ids: if c.stop_ids.is_empty() {
                vec![c.eos_id]
            } else {
                c.stop_ids.clone()
            },
            add_bos: c.add_bos,
            chat_template: c.chat_template.clone(),
        }
    }

    fn tokenizer_json(&self) -> Option<&str> {
        let t = ModelFile::tokenizer_json(self);
        (!t.is_empty()).then_some(t)
    }

    fn tokenizer_tables(&self) -> Option<crate::tokenizer::Bpe<'_>> {
        ModelFile::tokenizer_tables(self)
    }
}

impl Engine {
    /// Load a model file (shape-checked; the weights stay in the mapping).
    pub fn load(model: Arc<ModelFile>, opts: EngineOptions) -> Result<Engine> {
        Engine::from_source(model, opts)
    }
}
