package node

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseModelEndpoints(t *testing.T) {
	got, err := ParseModelEndpoints([]string{"llama=vllm:http://127.0.0.1:8000/v1", "qwen=tgi:https://gpu.internal:8080/v1",
		"mistral=ollama:http://127.0.0.1:11434/v1", "gemma=triton:http://127.0.0.1:8001"}, http.DefaultClient)
	require.NoError(t, err)
	require.Len(t, got, 4)
	require.Equal(t, "kserve", got["gemma"].Kind(), "Triton speaks KServe v2")
	require.Equal(t, "openai", got["llama"].Kind(), "vLLM speaks the OpenAI wire")

	for item, want := range map[string]string{
		"llama":                                "want NAME=KIND:URL",
		"=vllm:http://127.0.0.1:8000/v1":       "want NAME=KIND:URL",
		"llama=http://127.0.0.1:8000/v1":       `kind "http": want one of vllm, tgi, openai, ollama, triton`,
		"llama=triton-x:http://127.0.0.1:8000": `kind "triton-x": want one of`,
		"Llama!=vllm:http://127.0.0.1:8000/v1": `name "Llama!"`,
		"llama=vllm:127.0.0.1:8000":            `want an http(s)://host:port URL`,
		"llama=vllm:ftp://127.0.0.1/v1":        `want an http(s)://host:port URL`,
	} {
		_, err := ParseModelEndpoints([]string{item}, http.DefaultClient)
		require.ErrorContains(t, err, want, item)
		require.ErrorContains(t, err, "--model-endpoint", item)
	}
	_, err = ParseModelEndpoints([]string{"a=vllm:http://127.0.0.1:1/v1", "a=tgi:http://127.0.0.1:2/v1"}, http.DefaultClient)
	require.ErrorContains(t, err, "endpoint a is given twice")
}
