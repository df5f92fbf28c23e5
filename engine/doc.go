// Package engine loads, validates and runs planrun plans. It knows nothing
// of any particular step type: steps declare themselves with Def and the
// CLI hands the engine a Registry of them.
//
// Where things are:
//
//   - The plan format: format.go declares every key a plan may hold (the
//     schema, the README's format table and key checking derive from it);
//     plan.go holds the loaded Plan; load.go decodes and validates a file,
//     refs.go checks references between steps, yamlerr.go places YAML
//     syntax errors, problem.go is the file:line:col error list.
//   - Step types: step.go (Def, Type, Registry, Env), spec.go (params
//     declared by tagged structs: decoding, Duration, Size), schema.go (the
//     JSON schema), inverse.go (how a backup type is restored).
//   - Expressions: expr.go (${{ }} templates, `when:`, `assert:`, the
//     functions plans may call).
//   - A run: prepare.go (env files, vars, the child environment),
//     dotenv.go (env-file syntax), runner.go (Apply: order, interlock,
//     monitors, lock policy, exit codes; Refuse: a run that cannot start),
//     salvage.go (the monitors of a plan that does not load), step_run.go (one step: decide, interpolate,
//     decode, retry, assert), dryrun.go (the same path without executing),
//     lock.go (one run per plan), log.go and redact.go (logs without
//     secrets), progress.go (bytes streamed), lookpath.go (finding the
//     tools a step's child runs), strict.go (validate --strict).
//   - What a run leaves: record.go (RunRecord and the Recorder interface the
//     store implements), manifest.go (the artifacts a backup wrote and their
//     counts), restore.go and report.go (restores and drills derived from a
//     manifest, and what they found). The SQLite store is engine/store.
package engine
