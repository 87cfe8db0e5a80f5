-- The read-only reference database the inference workflow reads (MariaDB / MySQL).
-- Tests create it from this file; production already has it.
CREATE TABLE models (
  id INT PRIMARY KEY, name VARCHAR(100) NOT NULL, version VARCHAR(20) NOT NULL,
  framework VARCHAR(40) NOT NULL, trained_at DATETIME NOT NULL, num_classes INT NOT NULL,
  accuracy DECIMAL(5,4) NULL
);
CREATE TABLE deployments (
  id INT PRIMARY KEY, name VARCHAR(100) NOT NULL, model_id INT NOT NULL,
  created_at DATETIME NOT NULL, FOREIGN KEY (model_id) REFERENCES models(id)
);
CREATE TABLE product_references (
  id INT PRIMARY KEY, code VARCHAR(40) NOT NULL UNIQUE, name VARCHAR(200) NOT NULL,
  category VARCHAR(100) NULL, active TINYINT(1) NOT NULL DEFAULT 1
);
CREATE TABLE labels (
  id INT PRIMARY KEY, model_id INT NOT NULL, name VARCHAR(200) NOT NULL, reference_id INT NULL,
  FOREIGN KEY (model_id) REFERENCES models(id), FOREIGN KEY (reference_id) REFERENCES product_references(id)
);
CREATE TABLE devices (
  id INT PRIMARY KEY, code VARCHAR(40) NOT NULL UNIQUE, deployment_id INT NOT NULL,
  shop VARCHAR(100) NOT NULL, location VARCHAR(100) NULL, active TINYINT(1) NOT NULL DEFAULT 1,
  FOREIGN KEY (deployment_id) REFERENCES deployments(id)
);
