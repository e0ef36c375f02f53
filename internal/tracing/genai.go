package tracing

import (
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// GenAI semantic-convention attribute keys (OpenTelemetry gen_ai.*).
const (
	GenAIOperation     = attribute.Key("gen_ai.operation.name")
	GenAIProvider      = attribute.Key("gen_ai.provider.name")
	GenAIRequestModel  = attribute.Key("gen_ai.request.model")
	GenAIResponseModel = attribute.Key("gen_ai.response.model")
	GenAIResponseID    = attribute.Key("gen_ai.response.id")
	GenAIFinishReasons = attribute.Key("gen_ai.response.finish_reasons")
	GenAIInputTokens   = attribute.Key("gen_ai.usage.input_tokens")
	GenAIOutputTokens  = attribute.Key("gen_ai.usage.output_tokens")
	GenAIMaxTokens     = attribute.Key("gen_ai.request.max_tokens")
	GenAIInputMessages = attribute.Key("gen_ai.input.messages")
	GenAIOutputMessage = attribute.Key("gen_ai.output.messages")
)

// ModelSpanName is the GenAI span name: "{operation} {model}".
func ModelSpanName(operation, model string) string {
	if model == "" {
		return operation
	}
	return operation + " " + model
}

// ModelUsage records the outcome of a model call on its span.
func ModelUsage(span trace.Span, provider, responseModel string, inputTokens, outputTokens int64, finishReason string) {
	if !span.IsRecording() {
		return
	}
	attrs := []attribute.KeyValue{GenAIInputTokens.Int64(inputTokens), GenAIOutputTokens.Int64(outputTokens)}
	if provider != "" {
		attrs = append(attrs, GenAIProvider.String(provider))
	}
	if responseModel != "" {
		attrs = append(attrs, GenAIResponseModel.String(responseModel))
	}
	if finishReason != "" {
		attrs = append(attrs, GenAIFinishReasons.StringSlice([]string{finishReason}))
	}
	span.SetAttributes(attrs...)
}

// ModelMessages puts message content on a model span, only when the
// operator opted in (AGENTOS_OTEL_CAPTURE_CONTENT). Callers pass only the
// text that model-policy sends on after redaction, never the caller's
// input as received.
func ModelMessages(span trace.Span, redactedInputJSON, outputJSON string) {
	if !ModelContent() || !span.IsRecording() {
		return
	}
	span.SetAttributes(GenAIInputMessages.String(redactedInputJSON), GenAIOutputMessage.String(outputJSON))
}
