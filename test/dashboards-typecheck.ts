/**
 * The type dashboards/grafana/request-budget.json is held to: @grafana/schema's `Dashboard`, with
 * the panel kinds it uses narrowed to their plugin types (timeseries and table options and field
 * config), Prometheus targets, and data links.
 *
 * test/dashboards.test.ts pastes the JSON text into a virtual TypeScript file as an object literal
 * `satisfies CheckedDashboard` and compiles it. A literal, not `import x from '….json'`: an
 * imported JSON module is not a fresh object literal, so TypeScript would skip the excess-property
 * check and a misspelt field would pass.
 */
import type { Dashboard, DataQuery, DataSourceRef, FieldConfig, FieldConfigSource, Panel, RowPanel } from '@grafana/schema';
import type * as Table from '@grafana/schema/dist/esm/raw/composable/table/panelcfg/x/TablePanelCfg_types.gen';
import type * as TimeSeries from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen';

/** JSON spells a string enum member by its value: accept `"absolute"` where the schema says `ThresholdsMode.Absolute`. */
export type JsonOf<T> = T extends string ? `${T}` : T extends readonly (infer U)[] ? JsonOf<U>[] : T extends object ? { [K in keyof T]: JsonOf<T[K]> } : T;

/** The Prometheus data source's query model (Grafana's `PromQuery`; @grafana/schema does not ship it). */
export interface PrometheusTarget extends DataQuery {
  /** Every target names the `${datasource}` variable. */
  datasource: DataSourceRef;
  expr: string;
  legendFormat?: string;
  format?: 'time_series' | 'table' | 'heatmap';
  instant?: boolean;
  range?: boolean;
  interval?: string;
  editorMode?: 'code' | 'builder';
  exemplar?: boolean;
}

/** A data link (Grafana's `DataLink`; the schema types `FieldConfig.links` as `unknown[]`). */
export interface DataLink {
  title: string;
  url: string;
  targetBlank?: boolean;
}

type PanelOf<TType extends string, TOptions, TCustom> = Omit<Panel, 'type' | 'datasource' | 'options' | 'fieldConfig' | 'targets'> & {
  type: TType;
  datasource: DataSourceRef;
  options: TOptions;
  targets: PrometheusTarget[];
  fieldConfig: Omit<FieldConfigSource, 'defaults'> & {
    defaults: Omit<FieldConfig, 'custom' | 'links'> & { custom?: TCustom; links?: DataLink[] };
  };
};

export type TimeSeriesPanel = PanelOf<'timeseries', TimeSeries.Options, TimeSeries.FieldConfig>;
export type TablePanel = PanelOf<'table', Table.Options, Table.FieldConfig>;

/** A row that groups the panels below it (the Jobs row); it holds none itself while expanded. */
export type Row = Omit<RowPanel, 'panels'> & { panels: [] };

export type CheckedDashboard = JsonOf<Omit<Dashboard, 'panels'> & { panels: Array<TimeSeriesPanel | TablePanel | Row> }>;
