// render: renders a Helm chart the way `helm template` does, for machines without helm (Debian
// 12 does not package it). It is helm's own engine minus helm: Go's text/template, the Sprig
// function library helm uses, and helm's include, tpl, required, toYaml, fromYaml, toJson;
// values.yaml deep-merged with each -f file in order. It knows nothing of subcharts, hooks,
// lookup or .Capabilities (the chart uses none of them).
//
//	go run deploy/helm/render/main.go [-f values.yaml]... [-name RELEASE] [-namespace NS] CHART_DIR
//
// Build (GOPATH mode, Debian's packaged libraries; no network):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o render deploy/helm/render/main.go
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v3"
)

type files []string

func (f *files) String() string     { return strings.Join(*f, ",") }
func (f *files) Set(v string) error { *f = append(*f, v); return nil }

func die(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "render: "+format+"\n", a...)
	os.Exit(1)
}

func readYAML(path string) map[string]interface{} {
	b, err := os.ReadFile(path)
	if err != nil {
		die("%v", err)
	}
	m := map[string]interface{}{}
	if err := yaml.Unmarshal(b, &m); err != nil {
		die("%s: %v", path, err)
	}
	return m
}

// merge: src over dst, maps merged key by key (helm's coalescing of -f files).
func merge(dst, src map[string]interface{}) map[string]interface{} {
	for k, v := range src {
		if sm, ok := v.(map[string]interface{}); ok {
			if dm, ok := dst[k].(map[string]interface{}); ok {
				dst[k] = merge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
	return dst
}

func toYAML(v interface{}) string {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return ""
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

func main() {
	var valueFiles files
	name, namespace := "bulwark", "default"
	args := os.Args[1:]
	var chart string
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "-f", "--values":
			i++
			valueFiles.Set(args[i])
		case "-name", "--name":
			i++
			name = args[i]
		case "-namespace", "--namespace":
			i++
			namespace = args[i]
		default:
			chart = args[i]
		}
	}
	if chart == "" {
		die("usage: render [-f values.yaml]... [-name RELEASE] [-namespace NS] CHART_DIR")
	}
	meta := readYAML(filepath.Join(chart, "Chart.yaml"))
	values := readYAML(filepath.Join(chart, "values.yaml"))
	for _, f := range valueFiles {
		values = merge(values, readYAML(f))
	}
	top := map[string]interface{}{
		"Values":  values,
		"Release": map[string]interface{}{"Name": name, "Namespace": namespace, "Service": "Helm", "IsInstall": true},
		"Chart": map[string]interface{}{"Name": meta["name"], "Version": meta["version"], "AppVersion": meta["appVersion"]},
	}

	root := template.New("chart")
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	funcs["toYaml"] = toYAML
	funcs["toJson"] = func(v interface{}) string { b, _ := json.Marshal(v); return string(b) }
	funcs["fromYaml"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		yaml.Unmarshal([]byte(s), &m)
		return m
	}
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil || v == "" {
			return nil, fmt.Errorf("%s", msg)
		}
		return v, nil
	}
	funcs["fail"] = func(msg string) (string, error) { return "", fmt.Errorf("%s", msg) }
	funcs["include"] = func(n string, data interface{}) (string, error) {
		var buf bytes.Buffer
		err := root.ExecuteTemplate(&buf, n, data)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = t.Execute(&buf, data)
		return buf.String(), err
	}
	root.Funcs(funcs).Option("missingkey=zero")

	paths, _ := filepath.Glob(filepath.Join(chart, "templates", "*"))
	sort.Strings(paths)
	chartName := fmt.Sprint(meta["name"])
	var manifests []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			die("%v", err)
		}
		n := chartName + "/templates/" + filepath.Base(p)
		if _, err := root.New(n).Parse(string(b)); err != nil {
			die("%v", err)
		}
		if !strings.HasPrefix(filepath.Base(p), "_") && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			manifests = append(manifests, n)
		}
	}
	for _, n := range manifests {
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, n, top); err != nil {
			die("%v", err)
		}
		out := strings.ReplaceAll(buf.String(), "<no value>", "")
		if strings.TrimSpace(out) == "" {
			continue
		}
		fmt.Printf("---\n# Source: %s\n%s\n", n, strings.TrimSpace(out))
	}
}
