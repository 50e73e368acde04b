"""Tech-news harvester: Scrapy spiders and item pipelines that archive articles as posts."""
