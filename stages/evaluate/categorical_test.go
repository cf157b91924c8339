package evaluate_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/modelci/modelci/model"
	"github.com/modelci/modelci/stages/data"
	"github.com/modelci/modelci/stages/evaluate"
	"github.com/modelci/modelci/stages/train"
)

var housesCSV = filepath.Join("..", "data", "testdata", "houses.csv")

// housesModel trains the built-in model on houses.csv's training split
// (test fraction 0.2, seed 42) and returns its document's bytes and the
// test split.
func housesModel(t *testing.T) ([]byte, *data.Dataset) {
	t.Helper()
	d, err := data.Load(context.Background(), housesCSV, "price")
	if err != nil {
		t.Fatal(err)
	}
	trainSet, testSet, err := data.Split(d, 0.2, 42)
	if err != nil {
		t.Fatal(err)
	}
	res, err := train.Builtin(context.Background(), trainSet, train.DefaultParams(), 42)
	if err != nil {
		t.Fatal(err)
	}
	res.Model.Name, res.Model.Version = "houses", "1.0.0"
	b, err := res.Model.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b, testSet
}

// TestBuiltinCategoricalLosses checks each per-example loss against a
// computation written out here from the model document's JSON and the
// test rows' strings as encoding/csv reads them: impute, one-hot,
// standardise, weigh.
func TestBuiltinCategoricalLosses(t *testing.T) {
	doc, testSet := housesModel(t)
	m, err := model.Decode(doc)
	if err != nil {
		t.Fatal(err)
	}
	got, err := evaluate.Builtin(m, testSet)
	if err != nil {
		t.Fatal(err)
	}

	var j struct {
		Features []string
		Target   string
		Columns  []struct {
			Kind       string
			Impute     *float64
			Categories []string
		}
		Mean, Scale, Weights []float64
		Bias                 float64
	}
	if err := json.Unmarshal(doc, &j); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(housesCSV)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	rows := map[int][]string{}
	for {
		rec, err := r.Read()
		if err != nil {
			break
		}
		line, _ := r.FieldPos(0)
		rows[line] = rec
	}
	if len(testSet.Lines) != 12 || len(got) != 12 {
		t.Fatalf("%d test rows, %d losses", len(testSet.Lines), len(got))
	}
	imputed, unknownEmpty := 0, 0
	for i, line := range testSet.Lines {
		rec := rows[int(line)]
		y := j.Bias
		k := 0
		for c, col := range j.Columns {
			cell := rec[c]
			switch col.Kind {
			case "number":
				v := *col.Impute
				if cell != "" {
					v, err = strconv.ParseFloat(cell, 64)
					if err != nil {
						t.Fatal(err)
					}
				} else {
					imputed++
				}
				y += j.Weights[k] * ((v - j.Mean[k]) / j.Scale[k])
				k++
			case "category":
				if cell == "" {
					unknownEmpty++
				}
				for _, cat := range col.Categories {
					ind := 0.0
					if cat == cell {
						ind = 1
					}
					y += j.Weights[k] * ((ind - j.Mean[k]) / j.Scale[k])
					k++
				}
			}
		}
		target, err := strconv.ParseFloat(rec[5], 64)
		if err != nil {
			t.Fatal(err)
		}
		want := (y - target) * (y - target)
		if math.Abs(got[i]-want) > 1e-12*(1+want) {
			t.Errorf("line %d: loss %v, reference %v", line, got[i], want)
		}
	}
	if imputed < 3 || unknownEmpty < 1 {
		t.Errorf("the test split has %d imputed numbers and %d empty categories: the fixture no longer exercises them", imputed, unknownEmpty)
	}
}

// A test cell the model cannot take stops the evaluation at its
// file:line:column, naming the feature and the value.
func TestBuiltinCellErrors(t *testing.T) {
	doc, _ := housesModel(t)
	v2, err := model.Decode(doc)
	if err != nil {
		t.Fatal(err)
	}
	v1 := linear()
	dir := t.TempDir()
	write := func(name, content string) *data.Dataset {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		d, err := data.Load(context.Background(), path, d2target(content))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	for _, tc := range []struct {
		name, file, content string
		m                   *model.Linear
		want                error
		where, msg          string
	}{
		{"unseen region", "mars.csv", "sqft,region,age,rooms,zone,price\n1000,north,10,3,1,200\n1000,mars,10,3,1,200\n",
			v2, model.ErrUnseenCategory, ":3:2: ", `feature "region": category "mars" not seen in training`},
		{"unseen zone number", "zone.csv", "sqft,region,age,rooms,zone,price\n1000,north,10,3,4,200\n",
			v2, model.ErrUnseenCategory, ":2:5: ", `feature "zone": category "4"`},
		{"text for a number", "text.csv", "price,sqft,region,age,rooms,zone\n200,1000,north,ten,3,1\n",
			v2, model.ErrNotNumber, ":2:4: ", `feature "age": "ten": not a number`},
		{"missing for a v1 model", "v1.csv", "a,b,y\n1,2,3\n1,,3\n",
			v1, model.ErrNoImputation, ":3:2: ", `feature "b": missing value`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := write(tc.file, tc.content)
			_, err := evaluate.Builtin(tc.m, d)
			var pe *data.ParseError
			if !errors.Is(err, tc.want) || !errors.As(err, &pe) {
				t.Fatalf("Builtin: %v, want %v in a *data.ParseError", err, tc.want)
			}
			if !strings.Contains(err.Error(), filepath.Join(dir, tc.file)+tc.where) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q, want %s%s and %q", err, tc.file, tc.where, tc.msg)
			}
		})
	}
}

// d2target names the target of the fixtures above: price, or y.
func d2target(content string) string {
	if header, _, _ := strings.Cut(content, "\n"); slices.Contains(strings.Split(header, ","), "price") {
		return "price"
	}
	return "y"
}

// TestExternalEvaluatorGetsCells: test.csv holds the test rows' cells as
// the data set's file spelled them.
func TestExternalEvaluatorGetsCells(t *testing.T) {
	doc, testSet := housesModel(t)
	m, err := model.Decode(doc)
	if err != nil {
		t.Fatal(err)
	}
	project := t.TempDir()
	script := `cp "$MODELCI_DATA/test.csv" "$MODELCI_OUT/seen.csv"
echo '{"per_example_loss":[0,0,0,0,0,0,0,0,0,0,0,0]}' > "$MODELCI_OUT/predictions.json"
`
	if err := os.WriteFile(filepath.Join(project, "evaluate.sh"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if _, err := evaluate.External(context.Background(), evaluate.ExternalInput{
		Command: []string{"/bin/sh", "evaluate.sh"}, Dir: project, ModelDir: modelDir(t, m), Test: testSet, OutDir: out,
	}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(out, "seen.csv"))
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(housesCSV)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(src), "\n")
	want := lines[0]
	for _, l := range testSet.Lines {
		want += lines[l-1]
	}
	if string(got) != want {
		t.Errorf("test.csv:\n%s\nwant the test rows' source lines:\n%s", got, want)
	}
}
