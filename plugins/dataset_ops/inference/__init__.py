"""Inference-data extraction (retail vision): Elasticsearch records + MySQL reference data ->
analysis -> Excel report -> image review -> training dataset -> registration.

* :mod:`.config`: the Elasticsearch index/field mapping and the SQL queries (``include/inference/``);
* :mod:`.extract`: records (point in time + ``search_after``) to Parquet, reference data from MySQL;
* :mod:`.analysis`: per reference/device figures, labels, model data, consistency checks;
* :mod:`.workbook`: a streaming XlsxWriter workbook writer; :mod:`.report`: the report's sheets;
* :mod:`.process`: process folders and their metadata; :mod:`.tasks`: the DAG steps.
"""
