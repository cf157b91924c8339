package train_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/modelci/modelci/model"
	"github.com/modelci/modelci/stages/data"
	"github.com/modelci/modelci/stages/train"
)

var housesCSV = filepath.Join("..", "data", "testdata", "houses.csv")

// housesSplit is houses.csv split as the example spec would: test_fraction
// 0.2, seed 42.
func housesSplit(t testing.TB) (trainSet, testSet *data.Dataset) {
	t.Helper()
	d, err := data.Load(context.Background(), housesCSV, "price")
	if err != nil {
		t.Fatal(err)
	}
	trainSet, testSet, err = data.Split(d, 0.2, 42)
	if err != nil {
		t.Fatal(err)
	}
	return trainSet, testSet
}

// rawRows reads the cells of a CSV file as strings with encoding/csv,
// independently of the data package: rows by line number.
func rawRows(t testing.TB, path string) (header []string, byLine map[int][]string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	byLine = map[int][]string{}
	for {
		rec, err := r.Read()
		if err != nil {
			break
		}
		line, _ := r.FieldPos(0)
		if header == nil {
			header = rec
			continue
		}
		byLine[line] = rec
	}
	return header, byLine
}

// reference is the encoding the trainer should find, worked out from the
// strings of the training rows: region and zone are categories (they hold
// text), the rest numbers imputed with the mean of the non-empty cells.
type reference struct {
	categories map[int][]string
	impute     map[int]float64
	inputs     []string
	x          [][]float64 // training rows as inputs, before standardisation
}

func housesReference(t testing.TB, trainSet *data.Dataset) reference {
	header, byLine := rawRows(t, housesCSV)
	if !slices.Equal(header[:5], trainSet.Features) {
		t.Fatalf("header %q", header)
	}
	ref := reference{categories: map[int][]string{}, impute: map[int]float64{}}
	var rows [][]string
	for _, l := range trainSet.Lines {
		rows = append(rows, byLine[int(l)])
	}
	for j := range 5 {
		isText := false
		var sum float64
		n := 0
		distinct := map[string]bool{}
		for _, r := range rows {
			distinct[r[j]] = true
			if r[j] == "" {
				continue
			}
			v, err := strconv.ParseFloat(r[j], 64)
			if err != nil {
				isText = true
				continue
			}
			sum += v
			n++
		}
		if isText {
			for c := range distinct {
				ref.categories[j] = append(ref.categories[j], c)
			}
			slices.Sort(ref.categories[j])
			for _, c := range ref.categories[j] {
				ref.inputs = append(ref.inputs, header[j]+"="+c)
			}
		} else {
			ref.impute[j] = sum / float64(n)
			ref.inputs = append(ref.inputs, header[j])
		}
	}
	for _, r := range rows {
		var x []float64
		for j := range 5 {
			if cats, ok := ref.categories[j]; ok {
				for _, c := range cats {
					x = append(x, map[bool]float64{true: 1, false: 0}[c == r[j]])
				}
				continue
			}
			v := ref.impute[j]
			if r[j] != "" {
				v, _ = strconv.ParseFloat(r[j], 64)
			}
			x = append(x, v)
		}
		ref.x = append(ref.x, x)
	}
	return ref
}

// TestBuiltinCategorical trains on houses.csv: the model document is
// linear/v2 and holds the categories and means worked out independently
// from the file's strings, the standardisation of the one-hot inputs, and
// reaches the least-squares fit of those inputs.
func TestBuiltinCategorical(t *testing.T) {
	trainSet, _ := housesSplit(t)
	ref := housesReference(t, trainSet)
	p := train.DefaultParams()
	p.Epochs = 2000
	res, err := train.Builtin(context.Background(), trainSet, p, 42)
	if err != nil {
		t.Fatal(err)
	}
	m := res.Model
	if m.Schema != model.SchemaV2 || len(m.Columns) != 5 {
		t.Fatalf("schema %q, %d columns", m.Schema, len(m.Columns))
	}
	for j, c := range m.Columns {
		if cats, ok := ref.categories[j]; ok {
			if c.Kind != model.KindCategory || !slices.Equal(c.Categories, cats) || c.Impute != nil {
				t.Errorf("column %q: %+v, want categories %q", m.Features[j], c, cats)
			}
			continue
		}
		if c.Kind != model.KindNumber || c.Impute == nil || math.Abs(*c.Impute-ref.impute[j]) > 1e-12*math.Abs(ref.impute[j]) || c.Categories != nil {
			t.Errorf("column %q: %+v, want impute %v", m.Features[j], c, ref.impute[j])
		}
	}
	if got := m.Columns[1].Categories; !slices.Equal(got, []string{"", "east", "north", "north, hills", "south", "west"}) {
		t.Errorf("region categories %q", got)
	}
	if got := m.Columns[4].Categories; !slices.Equal(got, []string{"1", "2", "3", "B"}) {
		t.Errorf("zone categories %q", got)
	}
	var names []string
	for k := range m.NumInputs() {
		names = append(names, m.InputName(k))
	}
	if !slices.Equal(names, ref.inputs) {
		t.Fatalf("inputs %q, want %q", names, ref.inputs)
	}
	// Standardisation after imputation and one-hot: population statistics
	// of the reference inputs.
	n := float64(len(ref.x))
	for k := range ref.inputs {
		var mean, ss float64
		for _, x := range ref.x {
			mean += x[k]
		}
		mean /= n
		for _, x := range ref.x {
			ss += (x[k] - mean) * (x[k] - mean)
		}
		scale := math.Sqrt(ss / n)
		if math.Abs(m.Mean[k]-mean) > 1e-9*(1+math.Abs(mean)) || math.Abs(m.Scale[k]-scale) > 1e-9*scale {
			t.Errorf("input %s: mean %v scale %v, want %v %v", ref.inputs[k], m.Mean[k], m.Scale[k], mean, scale)
		}
	}
	// The fit: within 1% of least squares on [1, inputs] (QR; the one-hot
	// groups are collinear with the intercept, so the minimum-norm fit).
	a := mat.NewDense(len(ref.x), len(ref.inputs)+1, nil)
	for i, x := range ref.x {
		a.Set(i, 0, 1)
		for k, v := range x {
			a.Set(i, k+1, v)
		}
	}
	var svd mat.SVD
	if !svd.Factorize(a, mat.SVDThin) {
		t.Fatal("SVD failed")
	}
	var beta mat.Dense
	svd.SolveTo(&beta, mat.NewDense(len(ref.x), 1, slices.Clone(trainSet.Y)), svd.Rank(1e-10))
	var pred mat.Dense
	pred.Mul(a, &beta)
	opt := mse(pred.RawMatrix().Data, trainSet.Y)
	got := res.Loss[len(res.Loss)-1]
	t.Logf("training MSE %.4f, least squares %.4f", got, opt)
	if got > opt*1.01 {
		t.Errorf("training MSE %v is more than 1%% above the least-squares optimum %v", got, opt)
	}
	// Every training row through the document as the server takes it gives
	// the reported loss.
	var sse float64
	var text []string
	for i := range trainSet.Rows() {
		text = trainSet.RowText(text, i)
		y, err := m.PredictRow(trainSet.Row(i), text)
		if err != nil {
			t.Fatal(err)
		}
		sse += (y - trainSet.Y[i]) * (y - trainSet.Y[i])
	}
	if mseRows := sse / n; math.Abs(mseRows-got) > 1e-9*got {
		t.Errorf("MSE through the model %v, reported %v", mseRows, got)
	}
}

// TestBuiltinCategoricalDeterministic: the same split and seed give the
// same document, byte for byte, and it decodes to itself.
func TestBuiltinCategoricalDeterministic(t *testing.T) {
	trainSet, _ := housesSplit(t)
	var docs [][]byte
	for range 2 {
		res, err := train.Builtin(context.Background(), trainSet, train.DefaultParams(), 42)
		if err != nil {
			t.Fatal(err)
		}
		res.Model.Name, res.Model.Version = "houses", "1.0.0"
		b, err := res.Model.Encode()
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, b)
	}
	if !bytes.Equal(docs[0], docs[1]) {
		t.Fatal("two trainings differ")
	}
	m, err := model.Decode(docs[0])
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := m.Encode(); !bytes.Equal(again, docs[0]) {
		t.Error("the document does not decode to itself")
	}
	for _, want := range []string{`"schema": "modelci.dev/model/linear/v2"`, `"north, hills"`, `"impute": `} {
		if !strings.Contains(string(docs[0]), want) {
			t.Errorf("document lacks %s", want)
		}
	}
}

func TestBuiltinEmptyFeature(t *testing.T) {
	path := filepath.Join(t.TempDir(), "empty.csv")
	if err := os.WriteFile(path, []byte("a,b,y\n1,,2\n2,,3\n3,,5\n4,,4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := data.Load(context.Background(), path, "y")
	if err != nil {
		t.Fatal(err)
	}
	_, err = train.Builtin(context.Background(), d, train.DefaultParams(), 1)
	if !errors.Is(err, train.ErrEmptyFeature) || !strings.Contains(err.Error(), path+":2:2: ") || !strings.Contains(err.Error(), `"b" is empty in all 4 training rows`) {
		t.Fatalf("Builtin: %v, want ErrEmptyFeature at %s:2:2", err, path)
	}
}

// TestExternalTrainerGetsCells: train.csv, as an external trainer reads it,
// holds the training rows' cells as the data set's file spelled them:
// empty cells empty, text as text (quoted where it has a comma).
func TestExternalTrainerGetsCells(t *testing.T) {
	trainSet, _ := housesSplit(t)
	project := t.TempDir()
	script := `mkdir -p "$MODELCI_OUT/model" && cp "$MODELCI_DATA/train.csv" "$MODELCI_OUT/model/seen.csv" && echo '{"loss":[1]}' > "$MODELCI_OUT/train.json"` + "\n"
	if err := os.WriteFile(filepath.Join(project, "train.sh"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := train.External(context.Background(), train.ExternalInput{
		Command: []string{"/bin/sh", "train.sh"}, Dir: project, Train: trainSet, Seed: 42,
		OutDir: filepath.Join(t.TempDir(), "out"),
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(res.ModelDir, "seen.csv"))
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(housesCSV)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(src), "\n")
	want := lines[0]
	for _, l := range trainSet.Lines {
		want += lines[l-1]
	}
	if string(got) != want {
		t.Errorf("train.csv:\n%s\nwant the training rows' source lines:\n%s", got, want)
	}
	if !strings.Contains(want, `,"north, hills",`) || !strings.Contains(want, "\n,") || !strings.Contains(want, ",,") {
		t.Error("fixture lost its quoted text or empty cells")
	}
}
