# Sourced by the CLI tests: how to start N ranks here (root in CI, 2 cores).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mpirun_n() {
  local n=$1; shift
  mpirun --oversubscribe -np "$n" "$@"
}
