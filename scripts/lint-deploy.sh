#!/usr/bin/env bash
# Offline checks of everything that is deployed: shellcheck on every shell script, hadolint on
# the Dockerfile, yamllint on all YAML, strict Kubernetes schema validation of every object
# (also inside OpenShift Templates, after parameter substitution), and the image's runtime
# install steps (docker/install-runtime.sh with Debian's PostgreSQL) when running as root.
# Tools come from scripts/install-deps.sh lint.
set -euo pipefail
cd "$(dirname "$0")/.."
LINT=.tools/lint/bin

echo "== shellcheck"
shellcheck -x scripts/*.sh docker/*.sh .ci/run

echo "== hadolint"
"$LINT/hadolint" docker/Dockerfile

echo "== yamllint"
"$LINT/yamllint" -c .yamllint.yaml openshift kubernetes docker-compose.yml

echo "== kubernetes-validate --strict (templates substituted)"
PATH="$LINT:$PATH" "$LINT/python" scripts/validate-templates.py \
  openshift/templates/backup/backup-deploy.yaml \
  openshift/templates/backup/backup-deploy-dc.yaml \
  openshift/templates/backup/backup-build.yaml \
  openshift/templates/backup-cronjob/backup-cronjob.yaml \
  openshift/templates/backup-fleet/backup-fleet-indexed.yaml \
  kubernetes/backup-container.yaml \
  kubernetes/backup-fleet-indexed.yaml
if PATH="$LINT:$PATH" "$LINT/python" scripts/validate-templates.py tests/fixtures/invalid-deployment.yaml >/dev/null; then
  echo "the validator accepted tests/fixtures/invalid-deployment.yaml: it checks nothing" >&2
  exit 1
fi
# The DeploymentConfig check must refuse a bad strategy, and (strategy fixed) a selector that
# matches no pod label.
dc_fixture=tests/fixtures/invalid-deploymentconfig.yaml
selector_only=$(mktemp --suffix=.yaml)
sed 's/type: Bogus/type: Recreate/' "$dc_fixture" > "$selector_only"
for f in "$dc_fixture" "$selector_only"; do
  if PATH="$LINT:$PATH" "$LINT/python" scripts/validate-templates.py "$f" >/dev/null; then
    echo "the validator accepted $f: the DeploymentConfig check checks nothing" >&2
    exit 1
  fi
done
rm -f "$selector_only"

echo "== the DeploymentConfig template takes the same parameters as the Deployment one"
"$LINT/python" - <<'PY'
import yaml
def params(path):
    with open(path) as f:
        return [(p["name"], p.get("value")) for p in yaml.safe_load(f)["parameters"]]
a = params("openshift/templates/backup/backup-deploy.yaml")
b = params("openshift/templates/backup/backup-deploy-dc.yaml")
assert a == b, f"parameters differ: {set(a) ^ set(b)}"
print(f"{len(a)} parameters, the same names and defaults")
PY

echo "== docker/install-runtime.sh DRY_RUN (the image's packages per PostgreSQL major)"
dry=$(DRY_RUN=1 docker/install-runtime.sh)
echo "$dry"
[ "$(echo "$dry" | wc -l)" -eq 6 ] || { echo "expected six majors (13-18) by default" >&2; exit 1; }
[ "$(PG_MAJOR=16 DRY_RUN=1 docker/install-runtime.sh)" = "PostgreSQL 16: postgresql-16 postgresql-client-16" ] \
  || { echo "PG_MAJOR must mean one major only" >&2; exit 1; }
if PG_MAJORS=12 DRY_RUN=1 docker/install-runtime.sh 2>/dev/null; then echo "major 12 must be refused" >&2; exit 1; fi

if [ "$(id -u)" -eq 0 ] && [ "${LINT_SKIP_RUNTIME:-}" != 1 ]; then
  echo "== docker/install-runtime.sh (Debian PostgreSQL, the same steps as the image)"
  PG_MAJOR="${RUNTIME_PG_MAJOR:-15}" PG_SOURCE=debian WITH_MARIADB=1 docker/install-runtime.sh
fi
echo "deploy checks passed"
