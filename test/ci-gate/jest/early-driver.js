// Loads pg before request-budget's setup runs.
require('pg');
