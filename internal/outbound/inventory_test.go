package outbound

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestEveryClientIsBounded keeps this package the one place outbound HTTP
// clients are built: production code (tests, bench/ and tests/ aside)
// must not use http.DefaultClient or http.DefaultTransport, the package
// helpers that use them (http.Get, Post, Head, PostForm), build its own
// http.Transport, or make an http.Client without a Transport.
func TestEveryClientIsBounded(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..")
	var found []string
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			switch rel {
			case ".git", "bench", "tests", "node_modules", filepath.Join("internal", "outbound"):
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		httpName := ""
		for _, imp := range f.Imports {
			if imp.Path.Value == `"net/http"` {
				httpName = "http"
				if imp.Name != nil {
					httpName = imp.Name.Name
				}
			}
		}
		if httpName == "" {
			return nil
		}
		isHTTP := func(e ast.Expr, names ...string) bool {
			sel, ok := e.(*ast.SelectorExpr)
			if !ok {
				return false
			}
			id, ok := sel.X.(*ast.Ident)
			if !ok || id.Name != httpName {
				return false
			}
			for _, n := range names {
				if sel.Sel.Name == n {
					return true
				}
			}
			return false
		}
		report := func(n ast.Node, what string) {
			found = append(found, fset.Position(n.Pos()).String()+": "+what)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.SelectorExpr:
				if isHTTP(x, "DefaultClient", "DefaultTransport", "Get", "Post", "Head", "PostForm") {
					report(x, "http."+x.Sel.Name)
				}
			case *ast.CompositeLit:
				if isHTTP(x.Type, "Transport") {
					report(x, "an http.Transport built outside internal/outbound")
				}
				if isHTTP(x.Type, "Client") {
					hasTransport := false
					for _, el := range x.Elts {
						if kv, ok := el.(*ast.KeyValueExpr); ok {
							if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "Transport" {
								hasTransport = true
							}
						}
					}
					if !hasTransport {
						report(x, "an http.Client without a Transport (it would use http.DefaultTransport)")
					}
				}
			}
			return true
		})
		return nil
	})
	require.NoError(t, err)
	require.Empty(t, found, "build outbound clients with internal/outbound (Client, ModelClient, Transport)")
}
