"""Building the report: from predictions and costs to scores with intervals, paired tests,
the checks beside them and the verdict, and the typed `Report` that holds them."""
