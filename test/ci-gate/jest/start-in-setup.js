// What a new user tries first: start() in a jest setup file, without the preset.
require('@request-budget/node').start({ traceExporters: [], summary: false });
