# planrun — build, demo, tests, benchmarks.
GO      ?= go
BIN     := bin/planrun
PKGS    := ./...

.PHONY: build demo test unit bench fuzz docs schema testenv-start testenv-stop clean

build:
	$(GO) build -trimpath -o $(BIN) ./cmd/planrun

# Runs the built-in demo plan: no external services needed.
demo: build
	./scripts/demo.sh

# The test command: vet, then every test (unit + integration against real
# services that scripts/testenv.sh installs, starts and stops).
test:
	./scripts/test.sh

# Unit tests only (no services).
unit:
	$(GO) vet $(PKGS)
	$(GO) test -race $(PKGS)

bench: build
	./scripts/bench.sh

# Fuzz the plan loader and the env-file parser (no panics on any input).
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./engine -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s
	$(GO) test ./engine -run '^$$' -fuzz '^FuzzParseDotenv$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s

# Regenerate the JSON schema and the README format and step tables from the declarations.
docs schema:
	$(GO) test ./cmd/planrun -run TestReadmeStepTableIsFresh -update

testenv-start:
	./scripts/testenv.sh start

testenv-stop:
	./scripts/testenv.sh stop

clean:
	rm -rf bin
