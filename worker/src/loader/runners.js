// The warehouse runners by WAREHOUSE: each module exports a factory returning
// `{dialect, apply(statements, {s3, prefix}) → {rows}, close()}` whose failures are
// WarehouseError (errors.js). postgres.js speaks to PostgreSQL over a socket
// (WAREHOUSE_URL, or the HYPERDRIVE binding); redshift.js to the Redshift Data API.

import { ConfigError } from '../lib.js';
import { createPostgres, postgresConnectionString } from './postgres.js';
import { createRedshift, redshiftConfig } from './redshift.js';

/** A runner's own events (retries, polls) as log lines of the loader. */
function runnerLog(warehouse) {
  return (fields) => console.log(JSON.stringify({ event: 'warehouse', warehouse, ...fields }));
}

const FACTORIES = {
  postgresql: (env) => createPostgres({ connectionString: postgresConnectionString(env), log: runnerLog('postgresql') }),
  redshift: (env) => createRedshift({ cfg: redshiftConfig(env), log: runnerLog('redshift') }),
};

/** A connected runner for `warehouse` (`postgresql` or `redshift`). */
export async function openRunner(warehouse, env) {
  const factory = FACTORIES[warehouse];
  if (!factory) throw new ConfigError(`this worker has no ${warehouse} runner`);
  return factory(env);
}
