//! text-embeddings-inference's (TEI's) routes, in TEI's request and response shapes:
//! `POST /` (by model kind), `/embed`, `/similarity`, `/predict`, `/tokenize`, `/decode`,
//! `/rerank` (refused: no model served here can rank). Errors answer in TEI's shape.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request, State};
use axum::response::{IntoResponse, Response};
use mtl_bert::{cosine_matrix, l2_normalize_row};
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::{LabelProbability, TaskPrediction};
use crate::error::{ApiError, ErrorBody};
use crate::infer::{Truncation, encode_serially};
use crate::routes::{AppState, body, check_dimensions, shape_rows};
use crate::tei_api::{
    DecodeRequest, EmbedRequest, InputIds, LabelScore, PredictInput, PredictRequest,
    SimilarityInputs, SimilarityRequest, SimilarityResponse, SimpleToken, TokenizeRequest,
    TruncationDirection,
};

/// `top` if given, else `nested` (from `parameters`); both is a 422 naming the field.
fn merge<T>(top: Option<T>, nested: Option<T>, name: &str) -> Result<Option<T>, ApiError> {
    match (top, nested) {
        (Some(_), Some(_)) => Err(ApiError::invalid(format!(
            "`{name}` is given both at the top level and in `parameters`: give it once"
        ))),
        (top, nested) => Ok(top.or(nested)),
    }
}

/// `POST /` as TEI serves it: `/predict` for a model with tasks, `/embed` for an embedding
/// model.
#[utoipa::path(
    post,
    path = "/",
    request_body(content = EmbedRequest, description = "`/embed`'s body on an embedding model, `/predict`'s on a model trained by `mtl train`"),
    responses(
        (status = 200, description = "As /embed or /predict", body = Vec<Vec<f32>>),
        (status = 422, description = "As /embed or /predict", body = ErrorBody),
    )
)]
pub(crate) async fn root(State(state): State<AppState>, request: Request) -> Response {
    let has_tasks = match state.model() {
        Ok(model) => model.tasks.is_some(),
        Err(e) => return e.into_response(),
    };
    if has_tasks {
        let request = Json::from_request(request, &()).await;
        predict(State(state), request).await.into_response()
    } else {
        let request = Json::from_request(request, &()).await;
        embed(State(state), request).await.into_response()
    }
}

/// Embeddings, as TEI's `/embed` makes them.
#[utoipa::path(
    post,
    path = "/embed",
    request_body = EmbedRequest,
    responses(
        (status = 200, description = "One embedding per input", body = Vec<Vec<f32>>),
        (status = 400, description = "No input", body = ErrorBody),
        (status = 413, description = "Too many or too long inputs, or too large a body", body = ErrorBody),
        (status = 422, description = "An input, option or field is not acceptable", body = ErrorBody),
        (status = 429, description = "Too many requests in flight (see Retry-After)", body = ErrorBody),
    )
)]
pub(crate) async fn embed(
    State(state): State<AppState>,
    request: Result<Json<EmbedRequest>, JsonRejection>,
) -> Result<Json<Vec<Vec<f32>>>, ApiError> {
    let request = body(request)?;
    let model = state.model()?;
    let nested = request.parameters.unwrap_or_default();
    let truncate = merge(request.truncate, nested.truncate, "truncate")?;
    let direction = merge(
        request.truncation_direction,
        nested.truncation_direction,
        "truncation_direction",
    )?;
    let prompt_name = merge(request.prompt_name, nested.prompt_name, "prompt_name")?;
    let normalize = merge(request.normalize, nested.normalize, "normalize")?.unwrap_or(true);
    let dimensions = merge(request.dimensions, nested.dimensions, "dimensions")?;
    check_dimensions(dimensions, model.dim)?;
    let texts = state
        .prompts
        .apply(prompt_name.as_deref(), request.inputs.into_texts())?;
    let truncation = Truncation {
        truncate: truncate.unwrap_or(true),
        direction: direction.unwrap_or_default(),
    };
    let (mut rows, _) = state.infer.embed(model, texts, truncation).await?;
    shape_rows(&mut rows, dimensions, normalize);
    Ok(Json(rows))
}

/// The cosine similarity of `source_sentence` with each of `sentences` (TEI's shape); for a
/// list of texts, the cosine matrix of every pair.
#[utoipa::path(
    post,
    path = "/similarity",
    request_body = SimilarityRequest,
    responses(
        (status = 200, description = "One score per sentence, in order (a matrix for a list of texts)", body = Vec<f32>),
        (status = 400, description = "No sentences", body = ErrorBody),
        (status = 413, description = "Too many or too long inputs", body = ErrorBody),
        (status = 422, description = "An input, option or field is not acceptable", body = ErrorBody),
    )
)]
pub(crate) async fn similarity(
    State(state): State<AppState>,
    request: Result<Json<SimilarityRequest>, JsonRejection>,
) -> Result<Json<SimilarityResponse>, ApiError> {
    let request = body(request)?;
    let model = state.model()?;
    let parameters = request.parameters.unwrap_or_default();
    let truncation = Truncation {
        truncate: parameters.truncate.unwrap_or(true),
        direction: parameters.truncation_direction.unwrap_or_default(),
    };
    let prompt = parameters.prompt_name.as_deref();
    match request.inputs {
        SimilarityInputs::Source(inputs) => {
            if inputs.sentences.is_empty() {
                return Err(ApiError::empty("`inputs.sentences` cannot be empty"));
            }
            let texts: Vec<String> = std::iter::once(inputs.source_sentence)
                .chain(inputs.sentences)
                .collect();
            let texts = state.prompts.apply(prompt, texts)?;
            let (mut rows, _) = state.infer.embed(model, texts, truncation).await?;
            rows.iter_mut().for_each(|row| l2_normalize_row(row));
            let (source, others) = rows.split_first().expect("at least two texts");
            let scores = others
                .iter()
                .map(|row| source.iter().zip(row).map(|(a, b)| a * b).sum())
                .collect();
            Ok(Json(SimilarityResponse::Scores(scores)))
        }
        SimilarityInputs::Matrix(texts) => {
            let texts = state.prompts.apply(prompt, texts)?;
            let (rows, _) = state.infer.embed(model, texts, truncation).await?;
            let rows: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
            Ok(Json(SimilarityResponse::Matrix(cosine_matrix(&rows))))
        }
    }
}

/// The answer of `/predict`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum PredictResponse {
    /// TEI's answer to one input (a string or a pair): every label, most probable first.
    One(Vec<LabelScore>),
    /// TEI's answer to a batch: one such list per input.
    Batch(Vec<Vec<LabelScore>>),
    /// The richer multi-task answer: per input, per task, the label, its probability and every
    /// label's.
    Tasks(Vec<Vec<TaskPrediction>>),
}

/// Labels and their probabilities: TEI's shape on a one-task model or for the one `task`
/// named, the richer per-task shape when the request names `tasks` or the model has several.
#[utoipa::path(
    post,
    path = "/predict",
    request_body = PredictRequest,
    responses(
        (status = 200, description = "TEI's [{label, score}] (per input for a batch), or per input per task: label, its probability and every label's", body = PredictResponse),
        (status = 400, description = "No input", body = ErrorBody),
        (status = 413, description = "Too many or too long inputs", body = ErrorBody),
        (status = 422, description = "An input, option, task name or field is not acceptable", body = ErrorBody),
        (status = 424, description = "The model has no tasks (an embedding model)", body = ErrorBody),
    )
)]
pub(crate) async fn predict(
    State(state): State<AppState>,
    request: Result<Json<PredictRequest>, JsonRejection>,
) -> Result<Json<PredictResponse>, ApiError> {
    let request = body(request)?;
    let model = state.model()?;
    let (Some(tasks), Some(tokenizer)) = (&model.tasks, &model.task_tokenizer) else {
        return Err(ApiError::unsupported(format!(
            "{} is an embedding model without tasks: /predict needs a model trained by \
             `mtl train`",
            state.model_name
        )));
    };
    if request.raw_scores {
        return Err(ApiError::invalid(
            "raw_scores: this server answers probabilities only (the heads' softmax); leave \
             it out or send false",
        )
        .param("raw_scores"));
    }
    if request.truncation_direction == Some(TruncationDirection::Left) {
        return Err(ApiError::invalid(
            "truncation_direction Left: /predict cuts too-long inputs at their end only",
        )
        .param("truncation_direction"));
    }
    let parameters = request.parameters.unwrap_or_default();
    if let Some(function) = parameters.function_to_apply.as_deref()
        && function != "softmax"
    {
        return Err(ApiError::invalid(format!(
            "function_to_apply {function:?}: this server's heads answer softmax probabilities \
             only"
        ))
        .param("function_to_apply"));
    }
    let names = tasks.task_names();
    let index_of = |name: &String| {
        names.iter().position(|n| n == name).ok_or_else(|| {
            ApiError::invalid(format!(
                "unknown task {name:?} (this model's tasks: {})",
                names.join(", ")
            ))
        })
    };
    // The task answered in TEI's shape: the one named by `task`, or a one-task model's.
    let tei_task = match (&request.task, &request.tasks) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "give `task` (TEI's answer for one task) or `tasks` (the per-task answer), not both",
            ));
        }
        (Some(name), None) => Some(index_of(name)?),
        (None, None) if names.len() == 1 => Some(0),
        _ => None,
    };
    let wanted: Vec<usize> = match &request.tasks {
        None => (0..names.len()).collect(),
        Some(list) if list.is_empty() => {
            return Err(ApiError::invalid(
                "tasks is empty: leave it out for every task",
            ));
        }
        Some(list) => list.iter().map(index_of).collect::<Result<_, _>>()?,
    };
    if parameters.top_k.is_some() && tei_task.is_none() {
        return Err(ApiError::invalid(
            "top_k applies to TEI's answer ([{label, score}]: a one-task model, or `task`)",
        )
        .param("top_k"));
    }
    let one = matches!(request.inputs, PredictInput::One(_));
    let inputs = request.inputs.into_sequences();
    if inputs.is_empty() {
        return Err(ApiError::empty("`inputs` cannot be empty"));
    }
    let predictions = state
        .infer
        .predict(model, tokenizer, inputs, request.truncate.unwrap_or(true))
        .await?;
    if let Some(t) = tei_task {
        let mut lists: Vec<Vec<LabelScore>> = predictions
            .iter()
            .map(|per_task| {
                let p = &per_task[t];
                let mut labels: Vec<LabelScore> = tasks.tasks[t]
                    .labels
                    .iter()
                    .zip(&p.probabilities)
                    .map(|(label, &score)| LabelScore {
                        label: label.clone(),
                        score,
                    })
                    .collect();
                labels.sort_by(|a, b| b.score.total_cmp(&a.score));
                if let Some(k) = parameters.top_k {
                    labels.truncate(k);
                }
                labels
            })
            .collect();
        return Ok(Json(if one {
            PredictResponse::One(lists.remove(0))
        } else {
            PredictResponse::Batch(lists)
        }));
    }
    let answer = predictions
        .into_iter()
        .map(|per_task| {
            wanted
                .iter()
                .map(|&t| {
                    let p = &per_task[t];
                    TaskPrediction {
                        task: p.task.clone(),
                        label: p.label.clone(),
                        probability: p.probabilities[p.label_index],
                        probabilities: tasks.tasks[t]
                            .labels
                            .iter()
                            .zip(&p.probabilities)
                            .map(|(label, &probability)| LabelProbability {
                                label: label.clone(),
                                probability,
                            })
                            .collect(),
                    }
                })
                .collect()
        })
        .collect();
    Ok(Json(PredictResponse::Tasks(answer)))
}

/// The tokens of each input, as TEI's `/tokenize` lists them (not truncated).
#[utoipa::path(
    post,
    path = "/tokenize",
    request_body = TokenizeRequest,
    responses(
        (status = 200, description = "Per input, its tokens", body = Vec<Vec<SimpleToken>>),
        (status = 400, description = "No input", body = ErrorBody),
        (status = 422, description = "An input, option or field is not acceptable", body = ErrorBody),
    )
)]
pub(crate) async fn tokenize(
    State(state): State<AppState>,
    request: Result<Json<TokenizeRequest>, JsonRejection>,
) -> Result<Json<Vec<Vec<SimpleToken>>>, ApiError> {
    let request = body(request)?;
    let model = state.model()?;
    let texts = request.inputs.into_texts();
    state.infer.check_texts(&texts)?;
    let texts = state.prompts.apply(request.prompt_name.as_deref(), texts)?;
    let tokenizer = model.tokenizer_whole.clone();
    let add_special_tokens = request.add_special_tokens;
    let (texts, encodings) = state
        .infer
        .tokenizing(move || {
            let encodings = encode_serially(&tokenizer, texts.clone(), add_special_tokens);
            (texts, encodings)
        })
        .await?;
    let encodings =
        encodings.map_err(|e| ApiError::invalid(format!("tokenizing: {e}")).tokenizer())?;
    Ok(Json(
        texts
            .iter()
            .zip(&encodings)
            .map(|(text, encoding)| simple_tokens(text, encoding))
            .collect(),
    ))
}

/// `encoding`'s tokens of `text`: a special token by its own text and no offsets, any other by
/// the bytes of `text` it covers.
fn simple_tokens(text: &str, encoding: &tokenizers::Encoding) -> Vec<SimpleToken> {
    encoding
        .get_ids()
        .iter()
        .zip(encoding.get_offsets())
        .zip(encoding.get_special_tokens_mask())
        .zip(encoding.get_tokens())
        .map(|(((&id, &(start, stop)), &special), token)| {
            if special == 1 {
                SimpleToken {
                    id,
                    text: token.clone(),
                    special: true,
                    start: None,
                    stop: None,
                }
            } else {
                let bytes = text.as_bytes().get(start..stop).unwrap_or_default();
                SimpleToken {
                    id,
                    text: String::from_utf8_lossy(bytes).into_owned(),
                    special: false,
                    start: Some(start),
                    stop: Some(stop),
                }
            }
        })
        .collect()
}

/// The text of each sequence of token ids, as TEI's `/decode` gives it.
#[utoipa::path(
    post,
    path = "/decode",
    request_body = DecodeRequest,
    responses(
        (status = 200, description = "One text per sequence of ids", body = Vec<String>),
        (status = 400, description = "No ids", body = ErrorBody),
        (status = 422, description = "An id or field is not acceptable", body = ErrorBody),
    )
)]
pub(crate) async fn decode(
    State(state): State<AppState>,
    request: Result<Json<DecodeRequest>, JsonRejection>,
) -> Result<Json<Vec<String>>, ApiError> {
    let request = body(request)?;
    let model = state.model()?;
    let sequences = match request.ids {
        InputIds::One(ids) => vec![ids],
        InputIds::Many(sequences) => sequences,
    };
    if sequences.is_empty() {
        return Err(ApiError::empty("`ids` cannot be empty"));
    }
    if sequences.len() > state.infer.limits().max_inputs {
        return Err(ApiError::too_large(format!(
            "{} sequences, more than the limit of {} per request",
            sequences.len(),
            state.infer.limits().max_inputs
        )));
    }
    let tokenizer = model.tokenizer.inner();
    sequences
        .iter()
        .enumerate()
        .map(|(i, ids)| {
            if let Some(id) = ids.iter().find(|&&id| id as usize >= model.vocab_size) {
                return Err(ApiError::invalid(format!(
                    "ids {i}: {id} is not a token id of this model (its vocabulary has {})",
                    model.vocab_size
                ))
                .tokenizer());
            }
            tokenizer
                .decode(ids, request.skip_special_tokens)
                .map_err(|e| ApiError::invalid(format!("ids {i}: {e}")).tokenizer())
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Json)
}

/// TEI's re-ranking route, refused: no model this server loads is a re-ranker (a cross-encoder
/// with one output).
#[utoipa::path(
    post,
    path = "/rerank",
    responses(
        (status = 424, description = "This model cannot rank", body = ErrorBody),
    )
)]
pub(crate) async fn rerank(State(state): State<AppState>) -> ApiError {
    let kind = match state.model.get() {
        Some(model) if model.tasks.is_some() => "a multi-task classifier",
        _ => "a sentence embedding model",
    };
    ApiError::unsupported(format!(
        "model is not a re-ranker model: {} is {kind} and cannot rank; compare a query with \
         texts by /similarity instead",
        state.model_name
    ))
}
